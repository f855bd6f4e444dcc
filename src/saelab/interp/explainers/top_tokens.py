"""`top-tokens` explainer: no LLM. The latent's most frequent firing tokens and the context of
its strongest activation (`saelab.interp.top_tokens`) — the baseline LLM explanations must beat.

Every interp run explains with it beside the configured explainer and scores its texts as the
`top-tokens` variant; `TOP_TOKENS` is the one place its name is spelled."""

from __future__ import annotations

from typing import Any

from ..top_tokens import TOP_TOKENS_KIND, top_token_explanations
from .base import Explainer, Explanation


class TopTokensExplainer(Explainer):
    """Reads the latent store itself (all of a latent's firings), not the examples, and asks no LLM:
    `explain_store` replaces `prompt` / `explain`."""

    name = "top-tokens"
    needs_client = False
    variant = name  # scored under its own name, as the baseline and as a run's explainer
    kind = TOP_TOKENS_KIND

    def __init__(self, show_activations: bool = False) -> None:
        del show_activations  # no prompt: nothing is shown

    def prompt(self, examples: Any, decode: Any) -> Any:
        raise NotImplementedError("top-tokens asks no LLM: call explain_store(store, windows, tokenizer, latents).")

    def explain_store(self, store: Any, windows: Any, tokenizer: Any, latents: list[int]) -> list[Explanation]:
        """One explanation per latent of `latents`; a latent that never fires is a counted failure."""
        found = top_token_explanations(store, windows, tokenizer, latents=latents) if latents else {}
        return [Explanation(l, found[l], self.name) if l in found else
                Explanation(l, None, self.name, True, "the latent never fires") for l in latents]


TOP_TOKENS = TopTokensExplainer()
"""The no-LLM baseline: ask it for its `name` (explanations/<name>/), `variant` (scores/<scorer>/<variant>/)
and `kind` (how reports label its texts) instead of spelling "top-tokens"."""
