"""Sources of non-activating examples: chunks of the store where a latent never fires.

- `random`: uniformly drawn silent chunks.
- `neighbours`: silent chunks where one of the latent's co-occurrence neighbours (φ, from
  `workspace/cooc/<dictionary>/`, computed sparsely if missing) fires — near misses.
- `FAISS`: silent chunks whose sentence embedding is nearest to the latent's strongest
  training examples (hard negatives); chunk embeddings are cached on disk.
A source that finds too few fills up with random chunks and says so (`source` of the result).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..data.tokens import TokenWindows
from ..errors import MissingPackageError
from ..latents.store import LatentStore
from .examples import Chunks, Example

log = logging.getLogger(__name__)


class NegativeSource:
    """Picks silent chunk ids for a latent."""

    name = "random"

    def __init__(self, store: LatentStore, chunk_len: int) -> None:
        self.store, self.chunk_len = store, chunk_len
        self.n_chunks = store.n_windows * (store.ctx_len // chunk_len)

    def candidates(self, latent: int, chunks: Chunks, train: list[Example]) -> np.ndarray:
        """Silent chunk ids in preference order (empty: no preference, use random)."""
        return np.zeros(0, np.int64)

    def pick(self, latent: int, chunks: Chunks, train: list[Example], n: int,
             rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """(≤ n silent chunk ids, the source actually used)."""
        preferred = self.candidates(latent, chunks, train)[:n]
        source = self.name
        if preferred.size < n:
            silent = np.setdiff1d(np.arange(self.n_chunks), np.r_[chunks.ids, preferred])
            extra = rng.choice(silent, size=min(n - preferred.size, silent.size), replace=False)
            if preferred.size and extra.size:
                source = f"{self.name}+random"
            elif extra.size:
                source = "random"
            preferred = np.r_[preferred, extra].astype(np.int64)
        return preferred, source


class NeighbourSource(NegativeSource):
    """Chunks where a co-occurring latent (φ > 0) fires but this one does not."""

    name = "neighbours"

    def __init__(self, store: LatentStore, chunk_len: int, cooc: Any, n_neighbours: int = 10,
                 rng_seed: int = 0) -> None:
        super().__init__(store, chunk_len)
        self.cooc, self.n_neighbours, self.seed = cooc, n_neighbours, rng_seed

    def candidates(self, latent: int, chunks: Chunks, train: list[Example]) -> np.ndarray:
        idx, score = self.cooc.neighbours(latent, "phi")
        found: list[np.ndarray] = []
        for j in idx[score > 0][: self.n_neighbours]:
            e = self.store.activations(int(j))
            per = self.store.ctx_len // self.chunk_len
            inside = e.positions < per * self.chunk_len
            found.append(np.unique(e.windows[inside] * per + e.positions[inside] // self.chunk_len))
        if not found:
            return np.zeros(0, np.int64)
        silent = np.setdiff1d(np.unique(np.concatenate(found)), chunks.ids)
        return np.random.default_rng(self.seed + latent).permutation(silent)


def chunk_texts(windows: TokenWindows, tokenizer: Any, n_windows: int, ctx_len: int, length: int) -> list[str]:
    """The decoded text of every chunk, in chunk-id order."""
    per = ctx_len // length
    rows = windows.tokens[:n_windows, : per * length].reshape(n_windows * per, length).tolist()
    return tokenizer.batch_decode(rows, skip_special_tokens=True)


class FaissSource(NegativeSource):
    """Hard negatives: the silent chunks nearest (inner product of unit embeddings) to the
    latent's strongest training examples, from a faiss-cpu flat index over every chunk."""

    name = "FAISS"

    def __init__(self, store: LatentStore, chunk_len: int, windows: TokenWindows, tokenizer: Any,
                 cache_dir: Path, embedder: Any = None, n_queries: int = 5) -> None:
        super().__init__(store, chunk_len)
        try:
            import faiss
        except ImportError:
            raise MissingPackageError("non_activating_source=FAISS needs faiss-cpu: `pip install faiss-cpu`.") from None
        from ..models.embed import Embedder, EmbeddingCache

        texts = chunk_texts(windows, tokenizer, store.n_windows, store.ctx_len, chunk_len)
        embedder = embedder or Embedder()
        self.vectors, n_new = EmbeddingCache(cache_dir).embed(texts, embedder)
        log.info("FAISS: %d chunk embeddings (%d computed now, the rest from %s)", len(texts), n_new, cache_dir)
        self.index = faiss.IndexFlatIP(self.vectors.shape[1])
        self.index.add(np.ascontiguousarray(self.vectors, np.float32))
        self.n_queries = n_queries

    def candidates(self, latent: int, chunks: Chunks, train: list[Example]) -> np.ndarray:
        strongest = sorted(train, key=lambda e: -e.max_activation)[: self.n_queries]
        if not strongest:
            return np.zeros(0, np.int64)
        queries = self.vectors[[e.chunk for e in strongest]]
        k = min(self.index.ntotal, chunks.ids.size + 4 * 64)
        sims, ids = self.index.search(np.ascontiguousarray(queries, np.float32), k)  # [q, k]
        best: dict[int, float] = {}
        for s, i in zip(sims.ravel(), ids.ravel()):
            if i >= 0:
                best[int(i)] = max(best.get(int(i), -2.0), float(s))
        order = np.array(sorted(best, key=lambda i: (-best[i], i)), np.int64)
        return order[~np.isin(order, chunks.ids)]
