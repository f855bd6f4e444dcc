"""`MatchConfig`: the thresholds and choices of a dictionary-to-dictionary match."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from ..errors import ConfigError, choices_message

Assignment = Literal["hungarian", "sinkhorn"]


@dataclass(frozen=True)
class MatchConfig:
    """How two dictionaries are matched. Saved as `cfg.json` in `match/A__B/`."""

    same_threshold: float = 0.7
    """A one-to-one pair is "the same latent" at decoder cosine ≥ this (DESIGN.md §5); where
    decoders do not share a space, at activation correlation ≥ this."""

    min_correlation: float = 0.1
    """Pairs with activation correlation ≤ this are never called matches (DESIGN.md §5)."""

    novel_threshold: float = 0.4
    """A wide latent whose best score against the narrow dictionary is below this is novel."""

    strong_jaccard: float = 0.3
    """Top-token Jaccard above this is a strong overlap (the seed's threshold)."""

    weak_jaccard: float = 0.1
    """Top-token Jaccard below this is a weak overlap; in between is moderate."""

    assignment: Assignment = "hungarian"
    """One-to-one assignment: hungarian (exact) or sinkhorn (entropic, rounded)."""

    top_k_tokens: int = 20
    """A latent's top-token set: the distinct tokens at its k largest activations."""

    family_candidates: int = 8
    """Wide latents (highest decoder cosine) offered to NNLS for each narrow latent."""

    family_min_weight: float = 0.1
    """A family member keeps an NNLS weight ≥ this fraction of the largest one."""

    family_min_recon: float = 0.9
    """A family's rebuilt direction reaches at least this cosine with its parent."""

    family_min_gain: float = 0.05
    """... and beats the parent's best single wide latent by at least this cosine."""

    family_min_union_jaccard: float = 0.3
    """A family is confirmed by activations when parent-fires and some-member-fires agree at least
    this well (Jaccard of the two sets of tokens) ..."""

    family_max_cofire: float = 0.3
    """... and at most this share of the member firings have two or more members firing together."""

    chance_quantile: float = 0.99
    """"Above chance" = above this quantile of the random baseline's one-to-one scores."""

    seed: int = 0
    """Seed of the random baselines (decoder rotation, window shuffle)."""

    block_size: int = 4096
    """Rows per block of the all-pairs products (memory: block × width floats)."""

    dense_limit: int = 1 << 26
    """Most entries (n_a · n_b) for which the all-pairs scores are held as one dense matrix (and the
    one-to-one assignment is the exact dense Hungarian); above it each latent keeps its
    `candidates` best partners and the assignment runs on that graph (see match/topk.py).
    The default, 67M entries, is a 256 MB float32 matrix."""

    candidates: int = 32
    """Partners kept per latent, on either side, above `dense_limit`."""

    def is_dense(self, n_a: int, n_b: int) -> bool:
        """Whether a match of n_a × n_b latents holds its all-pairs scores as one dense matrix."""
        return n_a * n_b <= self.dense_limit

    def __post_init__(self) -> None:
        for name in ("same_threshold", "novel_threshold", "strong_jaccard", "weak_jaccard", "family_min_weight",
                     "family_min_recon", "family_min_union_jaccard", "family_max_cofire",
                     "chance_quantile"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"MatchConfig.{name}: got {value!r}; expected a number in [0, 1].")
        if not -1.0 <= self.min_correlation < 1.0:
            raise ConfigError(f"MatchConfig.min_correlation: got {self.min_correlation!r}; expected -1 ≤ r < 1, "
                              "e.g. 0.1.")
        if not 0.0 <= self.family_min_gain < 1.0:
            raise ConfigError(f"MatchConfig.family_min_gain: got {self.family_min_gain!r}; expected 0 ≤ gain < 1.")
        if self.weak_jaccard > self.strong_jaccard:
            raise ConfigError(f"MatchConfig.weak_jaccard: got {self.weak_jaccard} > strong_jaccard "
                              f"{self.strong_jaccard}; the weak bound must not exceed the strong one.")
        if self.assignment not in get_args(Assignment):
            raise ConfigError(choices_message("MatchConfig.assignment", self.assignment, get_args(Assignment)))
        if self.candidates < self.family_candidates:
            raise ConfigError(f"MatchConfig.candidates: got {self.candidates} < family_candidates "
                              f"{self.family_candidates}; keep at least as many partners as families are offered.")
        for name in ("top_k_tokens", "family_candidates", "block_size", "dense_limit", "candidates"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"MatchConfig.{name}: got {value!r}; expected a positive integer.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
