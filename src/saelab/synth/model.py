"""`SynthModel`: known feature vectors and the distribution of their activations; `sample` draws from it.

One sample, as SAELens's `ActivationGenerator.sample` + `FeatureDictionary.forward` draw it:
1. which features fire: independently with `firing_probabilities`, or, with a low-rank correlation, where
   z = eps @ factor.T + eta * sqrt(diag) (eps ~ N(0, I_rank), eta ~ N(0, I)) exceeds sqrt(2) erfinv(1 - 2p),
   so each feature still fires with probability p (a Gaussian copula);
2. a firing feature's activation: max(0, mean_i + std_i * N(0, 1));
3. the hierarchy, depth by depth: exclusive siblings keep one uniformly drawn winner, then a child is zeroed
   (or rescaled) unless its parent's activation is > 0;
4. x = acts @ feature_vectors + bias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor

from .._io import atomic_path, check_output_dir, write_json
from ..errors import ConfigError
from .config import SynthConfig
from .hierarchy import Hierarchy

CONFIG_FILE = "synthetic_model_config.json"
WEIGHTS_FILE = "synthetic_model.safetensors"
HIERARCHY_FILE = "hierarchy.json"


@dataclass(frozen=True, eq=False)
class SynthModel:
    """A synthetic model (make one with `make_synth_model`, read one with `load_synth_model`)."""

    cfg: SynthConfig
    """The config it was built from."""

    feature_vectors: Tensor
    """float32 [num_features, hidden_dim]: the ground-truth features f_i (unit rows)."""

    bias: Tensor
    """float32 [hidden_dim]: b (zeros when cfg.bias is False)."""

    firing_probabilities: Tensor
    """float32 [num_features]: P(feature fires) before the hierarchy gates it (compensated when asked)."""

    mean_firing_magnitudes: Tensor
    """float32 [num_features]: mean activation of a firing feature."""

    std_firing_magnitudes: Tensor
    """float32 [num_features]: standard deviation of a firing feature's activation."""

    hierarchy: Hierarchy | None = None
    """Feature trees, or None."""

    correlation_factor: Tensor | None = None
    """float32 [num_features, rank]: low-rank part of the firing correlation, or None (independent firing)."""

    correlation_diag: Tensor | None = None
    """float32 [num_features]: diagonal part, 1 - |factor row|^2; set exactly when correlation_factor is."""

    def __post_init__(self) -> None:
        f, d = self.cfg.num_features, self.cfg.hidden_dim
        shapes = {"feature_vectors": (f, d), "bias": (d,), "firing_probabilities": (f,),
                  "mean_firing_magnitudes": (f,), "std_firing_magnitudes": (f,), "correlation_diag": (f,)}
        for name, shape in shapes.items():
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape:
                raise ConfigError(f"SynthModel.{name}: got shape {tuple(value.shape)}; expected {shape} "
                                  f"(num_features={f}, hidden_dim={d}).")
        factor = self.correlation_factor
        if (factor is None) != (self.correlation_diag is None) or (factor is not None and (
                factor.ndim != 2 or factor.shape[0] != f)):
            raise ConfigError(f"SynthModel.correlation_factor: got {None if factor is None else tuple(factor.shape)} "
                              f"with correlation_diag {'None' if self.correlation_diag is None else 'set'}; expected "
                              f"both None, or a [{f}, rank] factor and a [{f}] diag.")
        if self.correlation_diag is not None and not (self.correlation_diag > 0).all():
            raise ConfigError("SynthModel.correlation_diag: got values <= 0; expected all > 0.")
        if not ((self.firing_probabilities >= 0) & (self.firing_probabilities <= 1)).all():
            raise ConfigError("SynthModel.firing_probabilities: got values outside [0, 1]; expected probabilities.")
        if self.hierarchy is not None:
            self._check_hierarchy(self.hierarchy)

    def _check_hierarchy(self, hierarchy: Hierarchy) -> None:
        outside = [i for i in hierarchy.feature_indices if i >= self.cfg.num_features]
        if outside:
            raise ConfigError(f"SynthModel.hierarchy: feature indices {sorted(outside)[:5]} are >= num_features="
                              f"{self.cfg.num_features}.")
        scaling = [lv.parents[lv.rescale] for lv in hierarchy.levels if lv.rescale is not None]
        if scaling and not all((self.mean_firing_magnitudes[p] > 0).all() for p in scaling):
            raise ConfigError("SynthModel.mean_firing_magnitudes: a parent with scale_children_by_parent has mean "
                              "magnitude <= 0; expected > 0 (children are scaled by activation / mean).")

    @cached_property
    def _thresholds(self) -> Tensor:
        """[num_features]: P(N(0, 1) > t_i) = p_i (p = 1 gives -inf, p = 0 gives inf)."""
        return math.sqrt(2) * torch.erfinv(1 - 2 * self.firing_probabilities)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(hidden [n, hidden_dim], feature activations [n, num_features] >= 0), both float32.

        Every random number comes from `generator` (on the model's device; None: a freshly seeded one), so the
        same generator state gives the same batch. Example: `x, a = m.sample(4096, torch.Generator().manual_seed(0))`.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ConfigError(f"SynthModel.sample n: got {n!r}; expected an integer >= 0.")
        device = self.feature_vectors.device
        if generator is None:
            generator = torch.Generator(device)
            generator.seed()
        rows, cols = self._fire(n, generator)
        vals = self.mean_firing_magnitudes[cols]
        if self.std_firing_magnitudes.any():
            vals = vals + torch.randn(len(cols), generator=generator, device=device) * self.std_firing_magnitudes[cols]
        acts = torch.zeros(n, self.cfg.num_features, device=device)
        acts[rows, cols] = vals.relu()
        if self.hierarchy is not None:
            self.hierarchy.apply(acts, self.mean_firing_magnitudes, generator)
            rows, cols = acts.nonzero(as_tuple=True)
        sparse = torch.sparse_coo_tensor(torch.stack([rows, cols]), acts[rows, cols], acts.shape,
                                         check_invariants=False)
        return torch.sparse.mm(sparse, self.feature_vectors) + self.bias, acts

    def _fire(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(rows, cols) of the firing features, row-major."""
        device = self.feature_vectors.device
        if self.correlation_factor is None:
            u = torch.rand(n, self.cfg.num_features, generator=generator, device=device)
            return torch.nonzero(u < self.firing_probabilities, as_tuple=True)
        eps = torch.randn(n, self.correlation_factor.shape[1], generator=generator, device=device)
        eta = torch.randn(n, self.cfg.num_features, generator=generator, device=device)
        z = eps @ self.correlation_factor.T + eta * self.correlation_diag.sqrt()  # [n, F], each N(0, 1)
        return torch.nonzero(z > self._thresholds, as_tuple=True)

    def to(self, device: str | torch.device) -> SynthModel:
        """The same model with its tensors on `device` (sample with a generator on that device)."""
        move = {k: getattr(self, k).to(device) for k in ("feature_vectors", "bias", "firing_probabilities",
                                                         "mean_firing_magnitudes", "std_firing_magnitudes")}
        if self.correlation_factor is not None:
            move.update(correlation_factor=self.correlation_factor.to(device),
                        correlation_diag=self.correlation_diag.to(device))
        return replace(self, **move)

    def save(self, path: str | Path) -> None:
        """Write SAELens's `SyntheticModel.save` layout into directory `path`: synthetic_model_config.json,
        synthetic_model.safetensors (feature_vectors, bias, firing_probabilities, correlation_factor /
        correlation_diag when correlated, plus saelab's mean/std_firing_magnitudes, which SAELens ignores and
        regenerates from the config) and hierarchy.json (when there is a hierarchy)."""
        from safetensors.torch import save_file

        path = check_output_dir(path, "SynthModel.save path")
        write_json(path / CONFIG_FILE, self.cfg.to_dict())
        names = ["feature_vectors", "bias", "firing_probabilities", "mean_firing_magnitudes", "std_firing_magnitudes"]
        if self.correlation_factor is not None:
            names += ["correlation_factor", "correlation_diag"]
        tensors = {k: getattr(self, k).detach().cpu().contiguous() for k in names}
        with atomic_path(path / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp))
        if self.hierarchy is not None:
            write_json(path / HIERARCHY_FILE, self.hierarchy.to_dict())
        elif (path / HIERARCHY_FILE).is_file():  # a stale one would be read back as this model's
            (path / HIERARCHY_FILE).unlink()
