"""SFAL: alignment of co-occurrence neighbours with explanation similarity (NDCG), with a
permutation baseline. Explanation sources, scoring, summary; the sentence embedder is a model
(`saelab.models.embed`), re-exported here."""

from ..models.embed import DEFAULT_EMBEDDER, Embedder, EmbeddingCache
from .config import SfalConfig
from .explanations import Explanations, from_neuronpedia, from_table, load_explanations
from .run import SfalResult, embed_explanations, explanations_for, run, sfal_dir
from .score import ndcg, overlap, phi_top, relevance, semantic_top

__all__ = ["DEFAULT_EMBEDDER", "Embedder", "EmbeddingCache", "Explanations", "SfalConfig", "SfalResult",
           "embed_explanations", "explanations_for", "from_neuronpedia", "from_table", "load_explanations", "ndcg",
           "overlap", "phi_top", "relevance", "run", "semantic_top", "sfal_dir"]
