"""What the report shows and how much of it (one frozen config, saved beside the site)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class ReportConfig:
    """Settings of `saelab report`."""

    max_latent_pages: int = 500
    """Latent pages written per dictionary (0: none). Latents with explanations come first (best
    score first), then latents with a one-to-one match partner, then the most frequent ones. A diff
    run's crosscoder gets pages for its named latents only (at most this many per layer)."""
    n_top_examples: int = 10
    """Top-activating windows shown per latent page."""
    n_quantiles: int = 5
    """Quantile groups of activating windows (lowest to highest maximum)."""
    per_quantile: int = 3
    """Windows shown per quantile group."""
    context_before: int = 24
    """Tokens shown before the maximum of an example window."""
    context_after: int = 8
    """Tokens shown after the maximum of an example window."""
    n_logits: int = 10
    """Tokens shown in each of the top and bottom logit-effect lists."""
    n_neighbours: int = 10
    """Nearest neighbours shown by decoder cosine and by co-occurrence (φ)."""
    n_predictions: int = 20
    """Per-example scorer predictions shown per latent and scorer."""
    histogram_bins: int = 30
    """Bins of a latent's activation-value histogram."""
    seed: int = 0
    """Seed of the quantile sample."""
    interp_runs: tuple[str, ...] = ()
    """Interp runs to show (names under workspace/interp/ or directories), each for the dictionary its
    run_config.json names; other dictionaries show their preferred run (`saelab.interp.load.interp_runs`)."""

    def __post_init__(self) -> None:
        for name in ("max_latent_pages", "n_top_examples", "n_quantiles", "per_quantile", "context_before",
                     "context_after", "n_logits", "n_neighbours", "n_predictions"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: got {getattr(self, name)}; expected an integer ≥ 0.")
        if self.histogram_bins < 1:
            raise ConfigError(f"histogram_bins: got {self.histogram_bins}; expected an integer ≥ 1.")
