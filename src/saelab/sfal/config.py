"""Configuration of an SFAL scoring run."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..models.embed import DEFAULT_EMBEDDER


@dataclass(frozen=True)
class SfalConfig:
    """How explanations are embedded and how alignment is scored."""

    embeddings: tuple[str, ...] = (DEFAULT_EMBEDDER,)
    """Sentence-transformers models (installed names or directories); one score column each."""
    top_n: int = 1023
    """Length of both rankings (SFAL: 1023); capped at (scored latents − 1)."""
    overlap_k: int = 10
    """k of the plain top-k overlap measure."""
    n_permutations: int = 5
    """Shuffles of explanations across latents for the random baseline."""
    seed: int = 0
    """Seed of the permutations."""
    n_top_tokens: int = 5
    """For the `top-tokens` source: tokens listed per latent."""
    neuronpedia_type: str | None = "oai_token-act-pair"
    """For a Neuronpedia export: the explanation type to use (SFAL's); None = any."""
    neuronpedia_explainer: str | None = None
    """For a Neuronpedia export: the explainer model (e.g. gpt-4o-mini); None = any."""
    neuronpedia_sae: str | None = None
    """For a Neuronpedia export holding several SAEs: "modelId/layer" to use."""
    batch_size: int = 64
    """Texts per embedding batch."""

    def __post_init__(self) -> None:
        if not self.embeddings:
            raise ConfigError("embeddings: got none; give at least one model, e.g. all-MiniLM-L6-v2.")
        for name in ("top_n", "overlap_k", "n_top_tokens", "batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: got {getattr(self, name)}; expected a positive integer.")
        if self.n_permutations < 1:
            raise ConfigError(f"n_permutations: got {self.n_permutations}; expected ≥ 1 (the baseline is required).")
