"""`SynthConfig`: everything that defines a synthetic model, in SAELens's `SyntheticModelConfig` form.

Same field names, defaults and nesting as SAELens 6.x, so `SynthConfig.from_dict(d)` reads the dict SAELens's
`SyntheticModelConfig.to_dict()` writes (its `synthetic_model_config.json`) and `to_dict()` writes it back
unchanged. Frozen dataclasses; `__post_init__` validates and never mutates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import ConfigError
from .profiles import (
    FIRING_KINDS,
    MAGNITUDE_KINDS,
    FiringProbabilityConfig,
    MagnitudeConfig,
    ZipfianFiringProbabilityConfig,
    build,
    profile_from_dict,
    profile_to_dict,
)


@dataclass(frozen=True)
class HierarchyConfig:
    """A forest of feature trees, built breadth first (SAELens's `generate_hierarchy`): a child fires only
    when its parent fires; the children of some parents are mutually exclusive (at most one fires)."""

    total_root_nodes: int = 100
    """Number of trees; their roots are features 0 .. total_root_nodes - 1."""

    branching_factor: int | tuple[int, int] = 100
    """Children per parent: an int (>= 2), or (min, max) for a uniform draw per parent."""

    max_depth: int = 2
    """Depth of the trees (1 = roots with leaf children)."""

    mutually_exclusive_portion: float = 0.0
    """Fraction of eligible parents (depth within the two bounds below, >= 2 children) whose children are
    mutually exclusive."""

    mutually_exclusive_min_depth: int = 0
    """Shallowest parent depth (roots: 0) eligible for mutual exclusion."""

    mutually_exclusive_max_depth: int | None = None
    """Deepest parent depth eligible for mutual exclusion; None for no limit."""

    compensate_probabilities: bool = False
    """Scale child probabilities up (by 1 / parent probability, and for exclusive siblings by
    1 + their siblings' probabilities / parent probability) so each feature fires about as often as its
    base probability says."""

    scale_children_by_parent: bool = False
    """Multiply a child's activation by parent activation / parent mean magnitude instead of a plain gate."""

    def __post_init__(self) -> None:
        name = "HierarchyConfig"
        if not _is_int(self.total_root_nodes) or self.total_root_nodes <= 0:
            raise ConfigError(f"{name}.total_root_nodes: got {self.total_root_nodes!r}; expected an integer > 0.")
        bf = self.branching_factor
        ok = (_is_int(bf) and bf >= 2) or (isinstance(bf, tuple) and len(bf) == 2 and all(map(_is_int, bf))
                                            and 2 <= bf[0] <= bf[1])
        if not ok:
            raise ConfigError(f"{name}.branching_factor: got {bf!r}; expected an integer >= 2 or a tuple (min, max) "
                              "with 2 <= min <= max.")
        if not _is_int(self.max_depth) or self.max_depth < 1:
            raise ConfigError(f"{name}.max_depth: got {self.max_depth!r}; expected an integer >= 1.")
        if not 0.0 <= self.mutually_exclusive_portion <= 1.0:
            raise ConfigError(f"{name}.mutually_exclusive_portion: got {self.mutually_exclusive_portion!r}; "
                              "expected a fraction in [0, 1].")
        lo, hi = self.mutually_exclusive_min_depth, self.mutually_exclusive_max_depth
        if not _is_int(lo) or lo < 0:
            raise ConfigError(f"{name}.mutually_exclusive_min_depth: got {lo!r}; expected an integer >= 0.")
        if hi is not None and (not _is_int(hi) or hi < lo):
            raise ConfigError(f"{name}.mutually_exclusive_max_depth: got {hi!r}; expected None or an integer >= "
                              f"mutually_exclusive_min_depth={lo}.")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if isinstance(self.branching_factor, tuple):
            d["branching_factor"] = list(self.branching_factor)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HierarchyConfig:
        d = dict(d)
        if isinstance(d.get("branching_factor"), list):  # JSON has no tuples
            d["branching_factor"] = tuple(d["branching_factor"])
        return build(cls, d, "SynthConfig.hierarchy")


@dataclass(frozen=True)
class OrthogonalizationConfig:
    """Push the unit feature vectors apart before use: Adam on sum_{i != j} (f_i . f_j)^2 +
    num_features * sum_i (|f_i|^2 - 1)^2, then renormalise (SAELens's `orthogonalize_embeddings`)."""

    num_steps: int = 200
    """Adam steps."""

    lr: float = 0.01
    """Adam learning rate."""

    chunk_size: int = 1024
    """Rows of the Gram matrix computed at once (memory only; the loss is the same)."""

    def __post_init__(self) -> None:
        for name in ("num_steps", "chunk_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < (0 if name == "num_steps" else 1):
                raise ConfigError(f"OrthogonalizationConfig.{name}: got {value!r}; expected a "
                                  f"{'non-negative' if name == 'num_steps' else 'positive'} integer.")
        if not self.lr > 0:
            raise ConfigError(f"OrthogonalizationConfig.lr: got {self.lr!r}; expected > 0.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OrthogonalizationConfig:
        return build(cls, dict(d), "SynthConfig.orthogonalization")


@dataclass(frozen=True)
class LowRankCorrelationConfig:
    """Correlated firing through a Gaussian copula whose correlation is F F^T + diag(1 - |F_i|^2), F a random
    [num_features, rank] matrix with N(0, correlation_scale^2) entries."""

    rank: int = 32
    """Columns of the factor F."""

    correlation_scale: float = 0.1
    """Standard deviation of F's entries (rows whose squared norm exceeds 0.99 are scaled down to 0.99)."""

    seed: int | None = None
    """Kept and written back, but unused: like SAELens's SyntheticModel, the factor is drawn with
    SynthConfig.seed + 4."""

    def __post_init__(self) -> None:
        if not _is_int(self.rank) or self.rank <= 0:
            raise ConfigError(f"LowRankCorrelationConfig.rank: got {self.rank!r}; expected an integer > 0.")
        if not self.correlation_scale >= 0:
            raise ConfigError(f"LowRankCorrelationConfig.correlation_scale: got {self.correlation_scale!r}; "
                              "expected >= 0.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LowRankCorrelationConfig:
        return build(cls, dict(d), "SynthConfig.correlation")


_NESTED = {"hierarchy": HierarchyConfig, "orthogonalization": OrthogonalizationConfig,
           "correlation": LowRankCorrelationConfig}


@dataclass(frozen=True)
class SynthConfig:
    """A synthetic model: x = sum_i a_i f_i + b, with known features f_i and sparse activations a_i >= 0.

    Example: `SynthConfig(num_features=4096, hidden_dim=256, hierarchy=HierarchyConfig(total_root_nodes=64,
    branching_factor=4, max_depth=2), correlation=LowRankCorrelationConfig(rank=16), seed=0)`.
    """

    num_features: int
    """Number of ground-truth features."""

    hidden_dim: int
    """Width of the activations x."""

    firing_probability: FiringProbabilityConfig = field(default_factory=ZipfianFiringProbabilityConfig)
    """Base firing probability per feature: zipfian, linear, random or constant."""

    hierarchy: HierarchyConfig | None = None
    """Feature trees (child fires only with its parent, optional mutual exclusion); None for none."""

    orthogonalization: OrthogonalizationConfig | None = None
    """Push the random unit feature vectors apart; None keeps them random."""

    correlation: LowRankCorrelationConfig | None = None
    """Low-rank correlated firing; None for independent firing."""

    std_firing_magnitudes: float | MagnitudeConfig = 0.0
    """Standard deviation of a firing feature's activation (one value, or per feature)."""

    mean_firing_magnitudes: float | MagnitudeConfig = 1.0
    """Mean activation of a firing feature (one value, or per feature); activations are max(0, N(mean, std^2))."""

    bias: bool | float = 1.0
    """Offset b: False (or 0) for none, True for a random vector of norm 1, a float for that norm."""

    dtype: str = "float32"
    """Tensor dtype; only "float32" (SAELens's sampling fails for others: its feature vectors are float32)."""

    seed: int | None = None
    """Seed of every random choice made when the model is built (probabilities +0, std +1, mean +2,
    hierarchy +3, correlation +4, feature vectors +0); None for a fresh random model."""

    def __post_init__(self) -> None:
        for name in ("num_features", "hidden_dim"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"SynthConfig.{name}: got {value!r}; expected an integer >= 1.")
        if not isinstance(self.firing_probability, tuple(FIRING_KINDS.values())):
            raise ConfigError(f"SynthConfig.firing_probability: got {self.firing_probability!r}; expected one of "
                              f"{', '.join(c.__name__ for c in FIRING_KINDS.values())} (from a dict: "
                              "SynthConfig.from_dict).")
        for name in ("std_firing_magnitudes", "mean_firing_magnitudes"):
            value = getattr(self, name)
            if not (_is_number(value) or isinstance(value, tuple(MAGNITUDE_KINDS.values()))):
                raise ConfigError(f"SynthConfig.{name}: got {value!r}; expected a float or one of "
                                  f"{', '.join(c.__name__ for c in MAGNITUDE_KINDS.values())}.")
        for name, cls in _NESTED.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, cls):
                raise ConfigError(f"SynthConfig.{name}: got {value!r}; expected None or a {cls.__name__}.")
        if not (isinstance(self.bias, bool) or _is_number(self.bias)):
            raise ConfigError(f"SynthConfig.bias: got {self.bias!r}; expected a bool or a float (the bias norm).")
        if self.dtype != "float32":
            raise ConfigError(f"SynthConfig.dtype: got {self.dtype!r}; saelab supports only 'float32' (SAELens "
                              "cannot sample other dtypes either: its feature vectors stay float32).")
        if self.seed is not None and not _is_int(self.seed):
            raise ConfigError(f"SynthConfig.seed: got {self.seed!r}; expected an integer or None.")

    def to_dict(self) -> dict[str, Any]:
        """The dict SAELens's `SyntheticModelConfig.to_dict()` writes for the same config (same keys, order)."""
        d: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("firing_probability", "std_firing_magnitudes", "mean_firing_magnitudes"):
                value = value if _is_number(value) else profile_to_dict(value)
            elif f.name in _NESTED and value is not None:
                value = value.to_dict()
            d[f.name] = value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthConfig:
        """Read a `to_dict()` dict (saelab's or SAELens's). Unknown keys and bad values raise ConfigError."""
        if not isinstance(d, dict):
            raise ConfigError(f"SynthConfig.from_dict: got {type(d).__name__}; expected a dict.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"SynthConfig: unknown keys {unknown}; expected keys among {sorted(known)}.")
        kw = dict(d)
        if "firing_probability" in kw:
            kw["firing_probability"] = profile_from_dict(kw["firing_probability"], FIRING_KINDS,
                                                         "SynthConfig.firing_probability")
        for name in ("std_firing_magnitudes", "mean_firing_magnitudes"):
            if isinstance(kw.get(name), dict):
                kw[name] = profile_from_dict(kw[name], MAGNITUDE_KINDS, f"SynthConfig.{name}")
            elif _is_number(kw.get(name)):
                kw[name] = float(kw[name])
        for name, nested in _NESTED.items():
            if kw.get(name) is not None:
                if not isinstance(kw[name], dict):
                    raise ConfigError(f"SynthConfig.{name}: got {kw[name]!r}; expected a dict or null.")
                kw[name] = nested.from_dict(kw[name])
        return build(cls, kw, "SynthConfig")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
