"""Per-feature profiles: firing probabilities and firing magnitudes (mean, std), one small config per kind.

The kinds, their fields, defaults and `generator_name`s are SAELens's (`sae_lens.synthetic.firing_probabilities`,
`firing_magnitudes`), so a config dict written by SAELens reads here unchanged. Each `generate` uses the same
formula and, for the random kinds, the same seeded torch calls, so a seed gives the same numbers as SAELens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Union

import torch
from torch import Tensor

from ..errors import ConfigError, choices_message


def _seeded(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with `seed`; None keeps torch's fixed default seed, as SAELens's does."""
    gen = torch.Generator()
    return gen.manual_seed(seed) if seed is not None else gen


def _check_range(owner: str, min_prob: float, max_prob: float, strict: bool) -> None:
    ok = 0 < min_prob < max_prob <= 1 if strict else 0 < min_prob <= max_prob <= 1
    if not ok:
        rel = "<" if strict else "<="
        raise ConfigError(f"{owner}.min_prob / max_prob: got min_prob={min_prob!r}, max_prob={max_prob!r}; "
                          f"expected 0 < min_prob {rel} max_prob <= 1.")


# ---------------------------------------------------------------------------------------------------------------
# firing probabilities


@dataclass(frozen=True)
class ZipfianFiringProbabilityConfig:
    """p_i = 1 / rank_i^exponent, rescaled linearly onto [min_prob, max_prob]; feature 0 fires most."""

    generator_name: ClassVar[str] = "zipfian"

    exponent: float = 1.0
    """Zipf exponent (> 0); higher drops off faster."""

    max_prob: float = 0.3
    """Firing probability of feature 0."""

    min_prob: float = 0.01
    """Firing probability of the last feature."""

    def __post_init__(self) -> None:
        if not self.exponent > 0:
            raise ConfigError(f"ZipfianFiringProbabilityConfig.exponent: got {self.exponent!r}; expected > 0.")
        _check_range("ZipfianFiringProbabilityConfig", self.min_prob, self.max_prob, strict=True)

    def generate(self, num_features: int, seed: int | None = None) -> Tensor:
        """float32 [num_features]."""
        if num_features == 1:
            return torch.tensor([self.max_prob])
        probs = 1.0 / torch.arange(1, num_features + 1, dtype=torch.float32) ** self.exponent
        lo, hi = probs.min(), probs.max()
        return self.min_prob + (self.max_prob - self.min_prob) * (probs - lo) / (hi - lo)


@dataclass(frozen=True)
class LinearFiringProbabilityConfig:
    """Probabilities falling linearly from max_prob (feature 0) to min_prob (the last feature)."""

    generator_name: ClassVar[str] = "linear"

    max_prob: float = 0.3
    """Firing probability of feature 0."""

    min_prob: float = 0.01
    """Firing probability of the last feature."""

    def __post_init__(self) -> None:
        _check_range("LinearFiringProbabilityConfig", self.min_prob, self.max_prob, strict=False)

    def generate(self, num_features: int, seed: int | None = None) -> Tensor:
        if num_features == 1:
            return torch.tensor([self.max_prob])
        return torch.linspace(self.max_prob, self.min_prob, num_features)


@dataclass(frozen=True)
class RandomFiringProbabilityConfig:
    """Probabilities drawn uniformly from [min_prob, max_prob] (seeded with the model's seed)."""

    generator_name: ClassVar[str] = "random"

    max_prob: float = 0.5
    """Upper end of the range."""

    min_prob: float = 0.01
    """Lower end of the range."""

    def __post_init__(self) -> None:
        _check_range("RandomFiringProbabilityConfig", self.min_prob, self.max_prob, strict=True)

    def generate(self, num_features: int, seed: int | None = None) -> Tensor:
        probs = torch.rand(num_features, generator=_seeded(seed), dtype=torch.float32)
        return self.min_prob + (self.max_prob - self.min_prob) * probs


@dataclass(frozen=True)
class ConstantFiringProbabilityConfig:
    """Every feature fires with the same probability."""

    generator_name: ClassVar[str] = "constant"

    probability: float = 0.1
    """The firing probability, in [0, 1]."""

    def __post_init__(self) -> None:
        if not 0 <= self.probability <= 1:
            raise ConfigError(f"ConstantFiringProbabilityConfig.probability: got {self.probability!r}; "
                              "expected a probability in [0, 1].")

    def generate(self, num_features: int, seed: int | None = None) -> Tensor:
        return torch.full((num_features,), self.probability, dtype=torch.float32)


FiringProbabilityConfig = Union[ZipfianFiringProbabilityConfig, LinearFiringProbabilityConfig,
                                RandomFiringProbabilityConfig, ConstantFiringProbabilityConfig]
FIRING_KINDS: dict[str, type] = {c.generator_name: c for c in (
    ZipfianFiringProbabilityConfig, LinearFiringProbabilityConfig, RandomFiringProbabilityConfig,
    ConstantFiringProbabilityConfig)}


# ---------------------------------------------------------------------------------------------------------------
# magnitudes (a plain float means the same value for every feature)


@dataclass(frozen=True)
class ConstantMagnitudeConfig:
    """The same value for every feature."""

    generator_name: ClassVar[str] = "constant"

    value: float = 1.0
    """The value."""

    def generate(self, num_features: int, seed: int | None = None) -> Tensor:
        return torch.full((num_features,), self.value, dtype=torch.float32)


@dataclass(frozen=True)
class LinearMagnitudeConfig:
    """start + (end - start) * i / (n - 1) for feature i."""

    generator_name: ClassVar[str] = "linear"

    start: float
    """Value of feature 0 (> 0)."""

    end: float
    """Value of the last feature (> 0)."""

    def __post_init__(self) -> None:
        if not (self.start > 0 and self.end > 0):
            raise ConfigError(f"LinearMagnitudeConfig.start / end: got start={self.start!r}, end={self.end!r}; "
                              "expected both > 0.")

    def generate(self, num_features: int, seed: int | None = None) -> Tensor:
        if num_features == 1:
            return torch.tensor([self.start], dtype=torch.float32)
        return torch.linspace(self.start, self.end, num_features)


@dataclass(frozen=True)
class ExponentialMagnitudeConfig:
    """start * (end / start)^(i / (n - 1)) for feature i."""

    generator_name: ClassVar[str] = "exponential"

    start: float
    """Value of feature 0 (> 0)."""

    end: float
    """Value of the last feature (> 0)."""

    def __post_init__(self) -> None:
        if not (self.start > 0 and self.end > 0):
            raise ConfigError(f"ExponentialMagnitudeConfig.start / end: got start={self.start!r}, "
                              f"end={self.end!r}; expected both > 0.")

    def generate(self, num_features: int, seed: int | None = None) -> Tensor:
        if num_features == 1:
            return torch.tensor([self.start], dtype=torch.float32)
        return self.start * (self.end / self.start) ** torch.linspace(0, 1, num_features)


@dataclass(frozen=True)
class FoldedNormalMagnitudeConfig:
    """|N(mean, std^2)| per feature, optionally clamped to [min_value, max_value] (seeded with the model's seed)."""

    generator_name: ClassVar[str] = "folded_normal"

    mean: float = 0.0
    """Mean of the normal before folding."""

    std: float = 0.1
    """Standard deviation of the normal before folding (> 0)."""

    min_value: float | None = None
    """Lower clamp (>= 0), or None."""

    max_value: float | None = None
    """Upper clamp (> 0), or None."""

    def __post_init__(self) -> None:
        name = "FoldedNormalMagnitudeConfig"
        if not self.std > 0:
            raise ConfigError(f"{name}.std: got {self.std!r}; expected > 0.")
        if self.min_value is not None and self.min_value < 0:
            raise ConfigError(f"{name}.min_value: got {self.min_value!r}; expected >= 0 or None.")
        if self.max_value is not None and self.max_value <= 0:
            raise ConfigError(f"{name}.max_value: got {self.max_value!r}; expected > 0 or None.")
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            raise ConfigError(f"{name}.min_value: got {self.min_value!r} > max_value={self.max_value!r}; "
                              "expected min_value <= max_value.")

    def generate(self, num_features: int, seed: int | None = None) -> Tensor:
        # seed None: SAELens draws from torch's global RNG; saelab from fresh entropy (never the global RNG)
        gen = torch.Generator().manual_seed(seed) if seed is not None else _fresh()
        samples = (self.mean + torch.randn(num_features, generator=gen) * self.std).abs()
        if self.min_value is not None or self.max_value is not None:
            samples = samples.clamp(min=self.min_value, max=self.max_value)
        return samples


def _fresh() -> torch.Generator:
    gen = torch.Generator()
    gen.seed()
    return gen


MagnitudeConfig = Union[ConstantMagnitudeConfig, LinearMagnitudeConfig, ExponentialMagnitudeConfig,
                        FoldedNormalMagnitudeConfig]
MAGNITUDE_KINDS: dict[str, type] = {c.generator_name: c for c in (
    ConstantMagnitudeConfig, LinearMagnitudeConfig, ExponentialMagnitudeConfig, FoldedNormalMagnitudeConfig)}


def magnitudes(num_features: int, value: float | MagnitudeConfig, seed: int | None) -> Tensor:
    """float32 [num_features] for a magnitude field: a float is the same value everywhere."""
    if isinstance(value, (int, float)):
        return torch.full((num_features,), float(value), dtype=torch.float32)
    return value.generate(num_features, seed)


# ---------------------------------------------------------------------------------------------------------------
# dict form: the fields plus `generator_name`, as SAELens writes them


def profile_to_dict(profile: Any) -> dict[str, Any]:
    return {**asdict(profile), "generator_name": profile.generator_name}


def profile_from_dict(d: Any, kinds: dict[str, type], field_name: str) -> Any:
    """The config of kind `d["generator_name"]` from its dict; ConfigError naming `field_name` otherwise."""
    if not isinstance(d, dict):
        raise ConfigError(f"{field_name}: got {d!r}; expected a dict with a 'generator_name' key.")
    d = dict(d)
    name = d.pop("generator_name", None)
    if name not in kinds:
        raise ConfigError(choices_message(f"{field_name}.generator_name", name, list(kinds)))
    return build(kinds[name], d, field_name)


def build(cls: type, d: dict[str, Any], field_name: str) -> Any:
    """`cls(**d)`, with unknown or missing keys named in a ConfigError."""
    try:
        return cls(**d)
    except TypeError as e:
        raise ConfigError(f"{field_name}: {e}; got keys {sorted(d)}.") from None
