"""Configuration of a co-occurrence count (DESIGN.md §5 "Co-occurrence and SFAL")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError

WindowKind = Literal["non-overlapping", "sliding"]
Partial = Literal["drop", "keep"]
Level = Literal["window", "token"]


@dataclass(frozen=True)
class CoocConfig:
    """How latents are counted as co-occurring."""

    k: int = 256
    """Tokens per co-occurrence window (SFAL: 256). Windows are cut inside documents
    (the workspace's token windows carry a document id per token), never across two."""
    window: WindowKind = "non-overlapping"
    """`non-overlapping`: windows start every k tokens of a document (SFAL);
    `sliding`: windows start every `stride` tokens, so they overlap."""
    stride: int | None = None
    """Start-to-start distance of sliding windows (default k // 4); must be None or k for
    non-overlapping windows."""
    partial: Partial = "drop"
    """A document's tail shorter than k, and a whole document shorter than k:
    `drop` = not counted (SFAL drops them silently; saelab counts them in cfg.json),
    `keep` = counted as one shorter window."""
    level: Level = "window"
    """`window`: B[window, latent] over k-token windows; `token`: every text token is its
    own window (token-level co-occurrence; k, window, stride, partial are then unused)."""
    n_docs: int | None = None
    """Use only the first n_docs documents of the store (in stream order). None: all."""
    n_tokens: int | None = None
    """Use only the first n_tokens token positions of the store. None: all."""
    top_k: int = 64
    """Neighbours kept per latent, for each of φ, Jaccard and NPMI."""
    chunk_windows: int = 1024
    """Co-occurrence windows (or tokens, at token level) per product BᵀB: the dense 0/1
    block of a chunk is chunk_windows × (latents active in it) float32 (256 MB at 65,536)."""

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k: got {self.k}; expected a positive number of tokens, e.g. 256.")
        if self.window not in ("non-overlapping", "sliding"):
            raise ConfigError(f"window: got {self.window!r}; expected 'non-overlapping' or 'sliding'.")
        if self.partial not in ("drop", "keep"):
            raise ConfigError(f"partial: got {self.partial!r}; expected 'drop' or 'keep'.")
        if self.level not in ("window", "token"):
            raise ConfigError(f"level: got {self.level!r}; expected 'window' or 'token'.")
        if self.window == "non-overlapping" and self.stride not in (None, self.k):
            raise ConfigError(f"stride: got {self.stride} with non-overlapping windows; leave it unset "
                              "(it is k) or use --window sliding.")
        if self.stride is not None and not 1 <= self.stride <= self.k:
            raise ConfigError(f"stride: got {self.stride}; expected 1 ≤ stride ≤ k ({self.k}).")
        if self.n_docs is not None and self.n_tokens is not None:
            raise ConfigError("n_docs, n_tokens: both given; give at most one of them.")
        for name in ("n_docs", "n_tokens"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name}: got {value}; expected a positive integer or None (all).")
        for name in ("top_k", "chunk_windows"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: got {getattr(self, name)}; expected a positive integer.")

    @property
    def effective_stride(self) -> int:
        if self.window == "non-overlapping":
            return self.k
        return self.stride if self.stride is not None else max(1, self.k // 4)
