"""Configuration of an evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError

Metric = Literal["reconstruction", "sparsity", "downstream", "absorption"]
ALL_METRICS: tuple[Metric, ...] = ("reconstruction", "sparsity", "downstream", "absorption")


@dataclass(frozen=True)
class EvalConfig:
    """What to measure, on how many tokens."""

    n_tokens: int = 131_072
    """Tokens (whole windows) for reconstruction and sparsity metrics. Read with the
    truncated forward: cheap."""
    ce_n_tokens: int = 16_384
    """Tokens, among the above, on which the CE/KL splice runs: three full forwards each
    (clean, spliced, zero-ablated), so ~10x the cost of a token above."""
    batch_size: int = 8
    """Windows per forward pass."""
    first_window: int | None = None
    """First evaluated window. None: the last windows of the workspace, so a dictionary
    trained on the first windows is evaluated on held-out text (overlap is reported)."""
    metrics: tuple[Metric, ...] = ("reconstruction", "sparsity", "downstream", "absorption")
    """Metric groups to compute. Absorption runs its own prompts (minutes)."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_tokens", "batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: got {getattr(self, name)}; expected a positive integer.")
        if self.ce_n_tokens < 0 or self.ce_n_tokens > self.n_tokens:
            raise ConfigError(f"ce_n_tokens: got {self.ce_n_tokens}; expected 0 ≤ ce_n_tokens ≤ n_tokens "
                              f"({self.n_tokens}).")
        bad = [m for m in self.metrics if m not in ALL_METRICS]
        if bad:
            raise ConfigError(f"metrics: got {bad}; expected any of {', '.join(ALL_METRICS)}.")
        if self.ce_n_tokens == 0 and "downstream" in self.metrics:  # no tokens would drop CE/KL without a word
            rest = ",".join(m for m in self.metrics if m != "downstream") or "reconstruction,sparsity"
            raise ConfigError(f"ce_n_tokens: got 0, but the downstream metrics (CE-loss score, KL) need at least "
                              f"one window of tokens; to leave them out, drop downstream from the metrics "
                              f"(--metrics {rest}).")
