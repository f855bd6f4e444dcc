"""Scorers: detection, fuzz, recall (LLM judges) and embedding (no LLM)."""

from .base import Item, Scorer, record
from .detection import Detection, Recall
from .embedding import EmbeddingScorer
from .fuzz import Fuzz

__all__ = ["Detection", "EmbeddingScorer", "Fuzz", "Item", "Recall", "Scorer", "record"]
