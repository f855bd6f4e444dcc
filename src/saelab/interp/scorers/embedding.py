"""`embedding`: cosine similarity of the explanation and each example text under a sentence
embedder (all-MiniLM-L6-v2 by default); ROC-AUC of similarity, activating vs non-activating.
No LLM. The prediction is 1 for the examples ranked in the top (number of activating) —
the threshold that balances the classes — so precision, recall and F1 exist too."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..clients.base import Answer, Client
from ..format import Decode, plain
from .base import Item, record
from .detection import Detection


class EmbeddingScorer(Detection):
    name = "embedding"
    needs_client = False

    def __init__(self, embed: Any = None, per_prompt: int = 1) -> None:
        super().__init__(per_prompt)
        self._embed = embed  # texts → float32 [n, dim] unit rows (lazy: the default embedder loads on first use)

    def embed(self, texts: list[str]) -> np.ndarray:
        if self._embed is None:
            from ...models.embed import Embedder

            self._embed = Embedder().embed
        return self._embed(texts)

    def score(self, explanation: str, items: Sequence[Item], decode: Decode, client: Client | None = None,
              **_: Any) -> list[dict[str, Any]]:
        if not items:
            return []
        vectors = self.embed([explanation] + [plain(it.example, decode) for it in items])
        sims = vectors[1:] @ vectors[0]  # [n]
        n_pos = sum(it.label for it in items)
        top = set(np.argsort(-sims, kind="stable")[:n_pos].tolist())
        out = []
        for i, (it, s) in enumerate(zip(items, sims)):
            r = record(it, Answer(prob_yes=float((s + 1) / 2)))
            r["prediction"], r["correct"] = int(i in top), bool(int(i in top) == it.label)
            out.append(r)
        return out
