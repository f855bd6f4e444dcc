"""Explainers: `default`, `contrastive` (LLM) and `top-tokens` (no LLM, the baseline)."""

from .base import Explainer, Explanation, parse_marked
from .contrastive import ContrastiveExplainer
from .default import DefaultExplainer
from .top_tokens import explain_top_tokens

__all__ = ["ContrastiveExplainer", "DefaultExplainer", "Explainer", "Explanation", "explain_top_tokens",
           "parse_marked"]
