"""Explainers: `default`, `contrastive` (LLM) and `top-tokens` (no LLM, the baseline)."""

from .base import Explainer, Explanation, parse_marked
from .contrastive import ContrastiveExplainer
from .default import DefaultExplainer
from .top_tokens import TOP_TOKENS, TopTokensExplainer

__all__ = ["TOP_TOKENS", "ContrastiveExplainer", "DefaultExplainer", "Explainer", "Explanation", "TopTokensExplainer",
           "parse_marked"]
