"""Interpretation of latents: explanations and their scores (DESIGN.md §5 "Auto-interpretation").

`run(config, workspace, dictionary)` cuts examples from the latent store, explains each latent
(an LLM explainer, and the no-LLM `top_token_explanations` baseline), scores explanations on
held-out examples, and writes a summary with measured chance (shuffled explanations)."""

from .clients import Answer, Client, OpenAIClient, OpenRouterClient, TransformersClient
from .config import ExampleConfig, InterpConfig, demo_preset
from .examples import Example, LatentExamples, build_examples
from .explainers import ContrastiveExplainer, DefaultExplainer, Explainer, Explanation, parse_marked
from .metrics import auc, classification
from .run import interp_dir, make_client, run
from .scorers import Detection, EmbeddingScorer, Fuzz, Recall, Scorer, Surprisal
from .top_tokens import TOP_TOKENS_KIND, top_token_explanations

__all__ = ["Answer", "Client", "ContrastiveExplainer", "DefaultExplainer", "Detection", "EmbeddingScorer", "Example",
           "ExampleConfig", "Explainer", "Explanation", "Fuzz", "InterpConfig", "LatentExamples", "OpenAIClient",
           "OpenRouterClient", "Recall", "Scorer", "Surprisal", "TOP_TOKENS_KIND", "TransformersClient", "auc", "build_examples",
           "classification", "demo_preset", "interp_dir", "make_client", "parse_marked", "run", "top_token_explanations"]
