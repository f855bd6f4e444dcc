"""Names → plugin classes (the CLI and the config validate against these)."""

from __future__ import annotations

EXPLAINERS = ("default", "contrastive", "top-tokens")
SCORERS = ("detection", "fuzz", "recall", "embedding", "surprisal")
PROVIDERS = ("transformers", "openai", "openrouter")


def make_scorer(name: str):
    from .scorers import Detection, EmbeddingScorer, Fuzz, Recall, Surprisal

    return {"detection": Detection, "fuzz": Fuzz, "recall": Recall, "embedding": EmbeddingScorer,
            "surprisal": Surprisal}[name]()


def make_explainer(name: str, show_activations: bool = False):
    from .explainers import ContrastiveExplainer, DefaultExplainer

    return {"default": DefaultExplainer, "contrastive": ContrastiveExplainer}[name](show_activations)
