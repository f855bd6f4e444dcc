"""Interpretation of latents: explanations and their scores (DESIGN.md §5 "Auto-interpretation").

`run(config, workspace, dictionary)` cuts examples from the latent store, explains each latent
(an LLM explainer, and the no-LLM `top_token_explanations` baseline), scores explanations on
held-out examples, and writes a summary with measured chance (shuffled explanations)."""

from .clients import Answer, Client, OpenAIClient, OpenRouterClient, TransformersClient
from .config import ExampleConfig, InterpConfig, demo_preset
from .examples import Example, LatentExamples, build_examples
from .explainers import ContrastiveExplainer, DefaultExplainer, Explainer, Explanation, parse_marked
from .load import find_run, load_explanations
from .merge import merge
from .metrics import auc, classification, pearson
from .run import interp_dir, make_client, run
from .scorers import Detection, EmbeddingScorer, Fuzz, Intruder, Recall, Scorer, Simulation, Surprisal
from .top_tokens import TOP_TOKENS_KIND, top_token_explanations

__all__ = ["Answer", "Client", "ContrastiveExplainer", "DefaultExplainer", "Detection", "EmbeddingScorer", "Example",
           "ExampleConfig", "Explainer", "Explanation", "Fuzz", "InterpConfig", "Intruder", "LatentExamples",
           "OpenAIClient", "OpenRouterClient", "Recall", "Scorer", "Simulation", "Surprisal", "TOP_TOKENS_KIND",
           "TransformersClient", "auc", "build_examples", "classification", "demo_preset", "find_run", "interp_dir",
           "load_explanations", "make_client", "merge", "parse_marked", "pearson", "run", "top_token_explanations"]
