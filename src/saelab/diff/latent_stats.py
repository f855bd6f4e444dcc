"""Per-latent statistics of a base/target crosscoder: Δnorm and tags, decoder cosine, latent
scaling (Minder et al. 2025), firing frequency per prompt group, and a table that saves them.

Decoder norms are compared in each model's normalised units: a coder trained by
`train_crosscoder` keeps the per-model activation scales in `cfg.extra["activation_scales"]`
(a coder without them is read with scales 1), so a target model whose activations are
larger overall does not make every latent look target-heavy.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from .._io import atomic_path, read_json, write_json
from ..coders import SparseCoder
from ..errors import ConfigError, FormatError

log = logging.getLogger(__name__)

TAGS = ("target-only", "base-only", "shared", "other")
VERDICTS = ("genuine", "complete shrinkage", "latent decoupling", "shrinkage and decoupling", "not fired")
OWN = {"base": 0, "target": 1}


def activation_scales(coder: SparseCoder) -> Tensor:
    """[n_sources] float32: the per-model scalars the coder was trained on (ones if not recorded)."""
    scales = coder.cfg.extra.get("activation_scales")
    if scales is None:
        return torch.ones(coder.cfg.n_sources)
    return torch.tensor(scales, dtype=torch.float32)


def decoder_norms(coder: SparseCoder) -> Tensor:
    """[d_sae, 2] float32: ‖d_j^base‖, ‖d_j^target‖ in normalised units."""
    _check_pair(coder)
    return coder.W_dec.detach().float().norm(dim=-1).cpu() / activation_scales(coder)[None]


@torch.no_grad()
def delta_norm(coder: SparseCoder) -> Tensor:
    """Δnorm_j = ½((‖d_j^base‖ − ‖d_j^target‖) / max(‖d_j^base‖, ‖d_j^target‖) + 1), [d_sae] float32.

    ~0: the latent writes only into the target model; ~1: only into the base; 0.5: equal norms.
    A latent with both norms 0 gets 0.5. Example:
        >>> tags = tag_latents(delta_norm(coder))
    """
    norms = decoder_norms(coder)
    base, target = norms[:, 0], norms[:, 1]
    return 0.5 * ((base - target) / torch.maximum(base, target).clamp_min(1e-30) + 1)


def tag_latents(delta: Tensor | np.ndarray, target_only: float = 0.1, base_only: float = 0.9,
                shared_band: float = 0.1) -> np.ndarray:
    """Δnorm [d_sae] -> str [d_sae] in TAGS: target-only (Δ < target_only), base-only
    (Δ > base_only), shared (|Δ − 0.5| ≤ shared_band), other."""
    if not 0 <= target_only < 0.5 - shared_band <= 0.5 + shared_band < base_only <= 1:
        raise ConfigError(f"tag_latents: got target_only={target_only}, shared_band={shared_band}, base_only="
                          f"{base_only}; expected 0 ≤ target_only < 0.5 − shared_band and 0.5 + shared_band < "
                          "base_only ≤ 1 (defaults 0.1, 0.1, 0.9).")
    d = np.asarray(delta.detach().cpu() if isinstance(delta, Tensor) else delta, dtype=np.float64)
    tags = np.full(d.shape, "other", dtype="<U11")
    tags[np.abs(d - 0.5) <= shared_band] = "shared"
    tags[d < target_only] = "target-only"
    tags[d > base_only] = "base-only"
    return tags


def delta_norm_spread(delta: Tensor | np.ndarray | Sequence[float], threshold: float = 0.1) -> dict[str, Any]:
    """How Δnorm is spread over latents (usually those that fire): did the crosscoder leave the middle?

    Returns {n, median, q25, q75, iqr, p05, p95, std, min, max, threshold, bands}: quantiles and standard
    deviation of `delta` [n] (None when it is empty) and `bands`, latents per tag of `tag_latents` with
    `threshold` (target-only < t, base-only > 1 − t, shared within t of 0.5, other). Example:
        >>> delta_norm_spread(delta_norm(coder)[alive], 0.1)["bands"]   # {"target-only": 12, "base-only": 3, …}
    """
    d = np.asarray(delta.detach().cpu() if isinstance(delta, Tensor) else delta, dtype=np.float64)
    tags = tag_latents(d, target_only=threshold, base_only=1 - threshold, shared_band=threshold)
    stats: dict[str, float | None] = dict.fromkeys(("median", "q25", "q75", "iqr", "p05", "p95", "std", "min", "max"))
    if d.size:
        p05, q25, median, q75, p95 = (float(v) for v in np.percentile(d, [5, 25, 50, 75, 95]))
        stats = {"median": median, "q25": q25, "q75": q75, "iqr": q75 - q25, "p05": p05, "p95": p95,
                 "std": float(d.std()), "min": float(d.min()), "max": float(d.max())}
    return {"n": int(d.size), **stats, "threshold": threshold, "bands": {t: int((tags == t).sum()) for t in TAGS}}


@torch.no_grad()
def decoder_cosine(coder: SparseCoder) -> Tensor:
    """[d_sae] float32: cosine of d_j^base and d_j^target (0 where either is zero)."""
    _check_pair(coder)
    w = coder.W_dec.detach().float().cpu()
    return torch.nn.functional.cosine_similarity(w[:, 0], w[:, 1], dim=-1, eps=1e-30)


def _check_pair(coder: SparseCoder) -> None:
    if coder.cfg.kind != "crosscoder" or coder.cfg.n_sources != 2:
        raise ConfigError(f"coder: got a {coder.cfg.kind} with {coder.cfg.n_sources} source(s); model diffing "
                          "needs a crosscoder on 2 sources (base, target).")


# -- latent scaling --------------------------------------------------------------------------------

@dataclass
class LatentScaling:
    """Latent scaling (Minder et al. 2025, arXiv 2504.02922) of chosen latents.

    For latent j with direction d (its decoder row in its `own` model, normalised units) and
    target y_m of model m, β = dᵀ(Σ_t f_j(t) y_m(t)) / (‖d‖² Σ_t f_j(t)²), the least-squares
    scale of f_j d in y_m. Targets: the error ε_m = y_m − ŷ_m + f_j d_j^m (reconstruction
    error with j's own contribution put back) and the reconstruction r_m = ŷ_m − b_dec^m
    (the latents' part; the decoder bias is not any latent's doing, so it is left out).
    ν = β(other model) / β(own model); a genuinely exclusive latent has both ν ≈ 0.
    """

    latents: np.ndarray
    """int64 [K]: latent indices"""
    own: np.ndarray
    """str [K]: the model whose decoder is the direction ("target" for target-only latents)"""
    beta_error: np.ndarray
    """float64 [K, 2]: β on ε of the base (column 0) and target (column 1) model"""
    beta_reconstruction: np.ndarray
    """float64 [K, 2]: β on r of each model"""
    n_fired: np.ndarray
    """int64 [K]: tokens where the latent fired"""
    threshold: float = 0.3
    """ν below which a ratio counts as "absent from the other model\""""
    n_tokens: int = 0
    """tokens streamed"""

    @property
    def nu_error(self) -> np.ndarray:
        """float64 [K]: ν_ε high (the direction is in the other model's error) = complete shrinkage."""
        return self._ratio(self.beta_error)

    @property
    def nu_reconstruction(self) -> np.ndarray:
        """float64 [K]: ν_r high (other latents reconstruct it in the other model) = latent decoupling."""
        return self._ratio(self.beta_reconstruction)

    def _ratio(self, beta: np.ndarray) -> np.ndarray:
        own = np.array([OWN[o] for o in self.own], dtype=np.int64)
        rows = np.arange(len(own))
        with np.errstate(divide="ignore", invalid="ignore"):
            return beta[rows, 1 - own] / beta[rows, own]

    @property
    def verdict(self) -> np.ndarray:
        """str [K] in VERDICTS."""
        eps_high = ~(self.nu_error < self.threshold)  # nan counts as high
        rec_high = ~(self.nu_reconstruction < self.threshold)
        out = np.full(len(self.latents), "genuine", dtype="<U24")
        out[eps_high & ~rec_high] = "complete shrinkage"
        out[rec_high & ~eps_high] = "latent decoupling"
        out[eps_high & rec_high] = "shrinkage and decoupling"
        out[self.n_fired == 0] = "not fired"
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready columns (nan/inf as None)."""
        cols = {"latent": self.latents, "own": self.own, "n_fired": self.n_fired,
                "beta_error_base": self.beta_error[:, 0], "beta_error_target": self.beta_error[:, 1],
                "beta_reconstruction_base": self.beta_reconstruction[:, 0],
                "beta_reconstruction_target": self.beta_reconstruction[:, 1],
                "nu_error": self.nu_error, "nu_reconstruction": self.nu_reconstruction, "verdict": self.verdict}
        return {"threshold": self.threshold, "n_tokens": self.n_tokens,
                "columns": {k: _jsonable(v) for k, v in cols.items()}}

    def save(self, path: str | Path) -> None:
        """Write `to_dict()` as JSON, atomically."""
        write_json(path, self.to_dict())


@torch.no_grad()
def latent_scaling(coder: SparseCoder, batches: Iterable[Tensor] | Callable[[], Iterable[Tensor]],
                   latents: Sequence[int] | Tensor | np.ndarray, *, own: Sequence[str] | None = None,
                   threshold: float = 0.3, max_tokens: int | None = None) -> LatentScaling:
    """Latent scaling of `latents` over paired activations, in one streamed pass.

    Args:
        coder: a base/target crosscoder.  batches: raw activations [N, 2, d_in] (or a callable giving them).
        latents: indices to test, usually the target-only (or base-only) ones.
        own: per latent "base" or "target": whose decoder is the direction; None: "target"
            where Δnorm < 0.5, else "base".
        threshold: ν below it = absent from the other model (Minder et al. keep latents with low ν).
        max_tokens: stop after this many tokens (None: the whole stream).

    Float64 accumulators of Σ f_j², Σ f_j·(d·ε_m) and Σ f_j·(d·r_m); no activation is kept.

    Example:
        >>> idx = np.flatnonzero(tag_latents(delta_norm(coder)) == "target-only")
        >>> ls = latent_scaling(coder, lambda: acts.batches(6, 4096), idx)
        >>> ls.verdict   # "genuine" / "complete shrinkage" / "latent decoupling" / …
    """
    _check_pair(coder)
    idx = torch.as_tensor(np.asarray(latents), dtype=torch.long).flatten().to(coder.device)
    if own is None:
        own = np.where(delta_norm(coder)[idx.cpu()].numpy() < 0.5, "target", "base")
    own = np.asarray(own, dtype="<U6")
    if len(own) != len(idx) or not set(own) <= set(OWN):
        raise ConfigError(f"own: got {list(own)[:8]}; expected one of 'base' / 'target' per latent ({len(idx)}).")
    scales = activation_scales(coder).to(coder.device, torch.float64)  # [2]
    W = coder.W_dec.detach()[idx].double() / scales[None, :, None]  # [K, 2, d] normalised units
    own_i = torch.as_tensor([OWN[o] for o in own], device=coder.device)
    direction = W[torch.arange(len(idx), device=coder.device), own_i]  # [K, d]
    b_dec = coder.b_dec.detach().double() / scales[:, None]  # [2, d]
    sum_f2 = torch.zeros(len(idx), dtype=torch.float64, device=coder.device)
    sum_err = torch.zeros(len(idx), 2, dtype=torch.float64, device=coder.device)
    sum_rec = torch.zeros_like(sum_err)
    n_fired = torch.zeros(len(idx), dtype=torch.long, device=coder.device)
    n_tokens = 0
    for x in (batches() if callable(batches) else batches):
        x = x.to(coder.device)
        z = coder.encode(x)  # [N, d_sae]
        x_hat = coder.decode(z).double() / scales[None, :, None]  # [N, 2, d]
        y = x.double() / scales[None, :, None]
        f = z[:, idx].double()  # [N, K]
        rec = x_hat - b_dec  # [N, 2, d]: the latents' part of ŷ
        proj_err = torch.einsum("nsd,kd->nks", y - x_hat, direction)  # [N, K, 2]
        proj_rec = torch.einsum("nsd,kd->nks", rec, direction)
        f2 = f.pow(2).sum(0)  # [K]
        # ε_m = y_m − ŷ_m + f_j d_j^m: j's own contribution is put back
        sum_err += torch.einsum("nk,nks->ks", f, proj_err) + f2[:, None] * torch.einsum("ksd,kd->ks", W, direction)
        sum_rec += torch.einsum("nk,nks->ks", f, proj_rec)
        sum_f2 += f2
        n_fired += (f > 0).sum(0)
        n_tokens += x.shape[0]
        if max_tokens is not None and n_tokens >= max_tokens:
            break
    denom = (direction.pow(2).sum(-1) * sum_f2)[:, None]  # [K, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        beta_err = (sum_err / denom).cpu().numpy()
        beta_rec = (sum_rec / denom).cpu().numpy()
    return LatentScaling(latents=idx.cpu().numpy(), own=own, beta_error=beta_err, beta_reconstruction=beta_rec,
                         n_fired=n_fired.cpu().numpy(), threshold=threshold, n_tokens=n_tokens)


# -- firing frequency per group ---------------------------------------------------------------------

class GroupFiring(NamedTuple):
    """Firing frequency of every latent in each group of tokens (e.g. prompt categories)."""

    frequency: np.ndarray
    """float64 [n_groups, d_sae]: fraction of the group's tokens where the latent fires (nan: empty group)"""
    n_tokens: np.ndarray
    """int64 [n_groups]: tokens of each group"""


@torch.no_grad()
def firing_frequency_by_group(coder: SparseCoder, batches_with_group_ids: Iterable[Any] | Callable[[], Iterable[Any]],
                              n_groups: int) -> GroupFiring:
    """Per-latent firing frequency per group, in one pass.

    batches_with_group_ids yields (x [N, 2, d_in], group ids int [N]) pairs, or objects with
    `.acts` and `.group` (`PairedActivations.batches_with_meta`).
    Example:
        >>> firing = firing_frequency_by_group(coder, lambda: acts.batches_with_meta(6, 4096), len(acts.groups))
    """
    counts = torch.zeros(n_groups, coder.d_sae, dtype=torch.float64, device=coder.device)
    tokens = torch.zeros(n_groups, dtype=torch.float64, device=coder.device)
    source = batches_with_group_ids() if callable(batches_with_group_ids) else batches_with_group_ids
    for item in source:
        x, groups = (item.acts, item.group) if hasattr(item, "acts") else item
        groups = torch.as_tensor(np.asarray(groups), dtype=torch.long, device=coder.device)
        if groups.numel() and (int(groups.min()) < 0 or int(groups.max()) >= n_groups):
            raise ConfigError(f"batches_with_group_ids: group ids in [{int(groups.min())}, {int(groups.max())}]; "
                              f"expected ids in [0, n_groups={n_groups}).")
        fired = (coder.encode(x.to(coder.device)) > 0).double()  # [N, d_sae]
        counts.index_add_(0, groups, fired)
        tokens.index_add_(0, groups, torch.ones_like(groups, dtype=torch.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        freq = (counts / tokens[:, None]).cpu().numpy()
    return GroupFiring(freq, tokens.cpu().numpy().astype(np.int64))


# -- the latent table -------------------------------------------------------------------------------

@dataclass
class LatentTable:
    """Columns of per-latent values, one row per latent; saved as JSON or .npz, atomically.

    Example:
        >>> table = LatentTable.from_coder(coder)          # latent, delta_norm, tag, decoder_cosine, norms
        >>> table.add("freq/chat", firing.frequency[2])
        >>> table.save("diff/run/latents.json"); LatentTable.load("diff/run/latents.json")
    """

    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_coder(cls, coder: SparseCoder, **tag_kwargs: float) -> "LatentTable":
        delta = delta_norm(coder)
        norms = decoder_norms(coder)
        return cls({"latent": np.arange(coder.d_sae), "delta_norm": delta.numpy().astype(np.float64),
                    "tag": tag_latents(delta, **tag_kwargs), "decoder_cosine": decoder_cosine(coder).numpy(),
                    "norm_base": norms[:, 0].numpy(), "norm_target": norms[:, 1].numpy()})

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def add(self, name: str, values: Any) -> None:
        values = np.asarray(values)
        if self.columns and len(values) != len(self):
            raise ConfigError(f"LatentTable.add({name!r}): got {len(values)} values; the table has {len(self)} rows.")
        self.columns[name] = values

    def add_scaling(self, scaling: LatentScaling) -> None:
        """Columns nu_error, nu_reconstruction, verdict (nan / "" for latents not tested)."""
        n = len(self)
        for name, values, empty in (("nu_error", scaling.nu_error, np.nan),
                                    ("nu_reconstruction", scaling.nu_reconstruction, np.nan),
                                    ("verdict", scaling.verdict, "")):
            col = np.full(n, empty, dtype=np.asarray(values).dtype if empty == "" else np.float64)
            col[scaling.latents] = values
            self.columns[name] = col

    def save(self, path: str | Path) -> None:
        """`.json` ({"n_latents", "columns"}) or `.npz`; written to a temporary name, then renamed."""
        path = Path(path)
        if path.suffix == ".npz":
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, **self.columns)
        elif path.suffix == ".json":
            write_json(path, {"n_latents": len(self), "columns": {k: _jsonable(v) for k, v in self.columns.items()}})
        else:
            raise ConfigError(f"LatentTable.save: got {path.name!r}; expected a .json or .npz file name.")

    @classmethod
    def load(cls, path: str | Path) -> "LatentTable":
        path = Path(path)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return cls({k: data[k] for k in data.files})
        try:
            data = read_json(path)
            return cls({k: np.array([np.nan if v is None else v for v in col]) for k, col in data["columns"].items()})
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise FormatError(f"{path}: not a latent table written by LatentTable.save ({e}).") from e


def _jsonable(values: Any) -> list:
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        return [float(v) if np.isfinite(v) else None for v in arr]
    return arr.tolist()


__all__ = ["GroupFiring", "LatentScaling", "LatentTable", "TAGS", "VERDICTS", "activation_scales", "decoder_cosine",
           "decoder_norms", "delta_norm", "delta_norm_spread", "firing_frequency_by_group", "latent_scaling",
           "tag_latents"]
