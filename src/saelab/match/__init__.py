"""Match the latents of two dictionaries: all pairs, one-to-one and many-to-one, families of
split latents, unique and novel latents, against a random baseline (DESIGN.md §5, Matching)."""

from .analysis import MatchAnalysis, analyse
from .api import FeatureContext, FeatureMatcher, Match, MatchReport, load_context
from .assignment import OneToOne, coverage_curve, hungarian, hungarian_sparse, many_to_one, sinkhorn
from .config import MatchConfig
from .families import Family, find_families
from .index import MatchIndex, Side
from .run import build_index, match_dir, run
from .similarity import activation_moments, cosine_matrix, cosine_topk, pearson, pearson_topk, unit_rows
from .top_tokens import jaccard, top_token_ids
from .topk import TopK

__all__ = ["FeatureContext", "FeatureMatcher", "Family", "Match", "MatchAnalysis", "MatchConfig", "MatchIndex",
           "MatchReport", "OneToOne", "Side", "TopK", "activation_moments", "analyse", "build_index",
           "cosine_matrix", "cosine_topk", "coverage_curve", "find_families", "hungarian", "hungarian_sparse",
           "jaccard", "load_context", "many_to_one", "match_dir", "pearson", "pearson_topk", "run", "sinkhorn",
           "top_token_ids", "unit_rows"]
