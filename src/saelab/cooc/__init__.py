"""Co-occurrence of latents over k-token windows (sparse C = BᵀB) and neighbours by φ, Jaccard, NPMI."""

from .config import CoocConfig
from .counts import CoocCounts
from .metrics import jaccard, npmi, phi
from .run import Cooc, cooc_dir, count, load_cooc, run

__all__ = ["Cooc", "CoocConfig", "CoocCounts", "cooc_dir", "count", "jaccard", "load_cooc", "npmi", "phi", "run"]
