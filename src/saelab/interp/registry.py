"""Names → plugin classes (the CLI and the config validate against these)."""

from __future__ import annotations

from typing import Any

from .explainers.top_tokens import TOP_TOKENS

EXPLAINERS = ("default", "default-fewshot", "default-tally", "contrastive", TOP_TOKENS.name)
SCORERS = ("detection", "fuzz", "recall", "simulation", "intruder", "embedding", "surprisal")
PROVIDERS = ("transformers", "openai", "openrouter")


def scorer_class(name: str) -> type:
    from .scorers import Detection, EmbeddingScorer, Fuzz, Intruder, Recall, Simulation, Surprisal

    return {"detection": Detection, "fuzz": Fuzz, "recall": Recall, "simulation": Simulation, "intruder": Intruder,
            "embedding": EmbeddingScorer, "surprisal": Surprisal}[name]


def make_scorer(name: str, config: Any = None):
    """The scorer `name`, with the config's `num_examples_per_scorer_prompt` (detection, fuzz, recall) and
    `n_intruder_examples` (intruder)."""
    per_prompt = getattr(config, "num_examples_per_scorer_prompt", 1)
    if name == "intruder":
        return scorer_class(name)(getattr(config, "n_intruder_examples", 5), per_prompt)
    return scorer_class(name)(per_prompt=per_prompt)


def make_explainer(name: str, show_activations: bool = False):
    from .explainers import ContrastiveExplainer, DefaultExplainer, TopTokensExplainer

    if name in ("default-fewshot", "default-tally"):
        return DefaultExplainer(show_activations, worked_examples=name == "default-fewshot",
                                tally=name == "default-tally")
    return {"default": DefaultExplainer, "contrastive": ContrastiveExplainer,
            TOP_TOKENS.name: TopTokensExplainer}[name](show_activations)
