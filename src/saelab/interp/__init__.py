"""Interpretation of latents: explanations and their scores (DESIGN.md §5 "Auto-interpretation").

So far: `top_token_explanations`, the no-LLM baseline description of a latent by the
tokens it fires on."""

from .top_tokens import TOP_TOKENS_KIND, top_token_explanations

__all__ = ["TOP_TOKENS_KIND", "top_token_explanations"]
