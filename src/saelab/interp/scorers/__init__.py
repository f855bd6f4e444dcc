"""Scorers: detection, fuzz, recall (LLM judges), surprisal (LM loss) and embedding (no LLM)."""

from .base import Item, Scorer, record
from .detection import Detection, Recall
from .embedding import EmbeddingScorer
from .fuzz import Fuzz
from .surprisal import Surprisal

__all__ = ["Detection", "EmbeddingScorer", "Fuzz", "Item", "Recall", "Scorer", "Surprisal", "record"]
