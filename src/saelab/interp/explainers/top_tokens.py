"""`top-tokens` explainer: no LLM. The latent's most frequent firing tokens and the context of
its strongest activation (`saelab.interp.top_tokens`) — the baseline LLM explanations must beat."""

from __future__ import annotations

from typing import Any

from ..top_tokens import top_token_explanations
from .base import Explanation

NAME = "top-tokens"


def explain_top_tokens(store: Any, windows: Any, tokenizer: Any, latents: list[int]) -> list[Explanation]:
    found = top_token_explanations(store, windows, tokenizer, latents=latents) if latents else {}
    return [Explanation(l, found[l], NAME) if l in found else
            Explanation(l, None, NAME, True, "the latent never fires") for l in latents]
