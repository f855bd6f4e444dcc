"""Interpretation of latents: explanations and their scores (DESIGN.md §5 "Auto-interpretation").

`run(config, workspace, dictionary)` cuts examples from the latent store, explains each latent
(an LLM explainer, and the no-LLM `top_token_explanations` baseline), scores explanations on
held-out examples, and writes a summary with measured chance (shuffled explanations). A stage that
picks its own latents calls its two steps: `draw_examples`, then `explain_and_score`. `compare_runs(run,
control)` sets a run beside the same run on a random model's dictionary (`interp.control`)."""

from .clients import Answer, Client, OpenAIClient, OpenRouterClient, TransformersClient
from .config import ExampleConfig, InterpConfig, demo_preset
from .control import compare_runs
from .examples import Example, LatentExamples, build_examples
from .explainers import (
                         TOP_TOKENS,
                         ContrastiveExplainer,
                         DefaultExplainer,
                         Explainer,
                         Explanation,
                         TopTokensExplainer,
                         parse_marked,
)
from .load import find_run, load_explanations
from .merge import merge
from .metrics import auc, classification, pearson
from .negatives import NegativeSource
from .run import Interpretation, draw_examples, explain_and_score, interp_dir, make_client, run, variant_names
from .scorers import Detection, EmbeddingScorer, Fuzz, Intruder, Recall, Scorer, Simulation, Surprisal
from .top_tokens import TOP_TOKENS_KIND, top_token_explanations

__all__ = ["TOP_TOKENS", "TOP_TOKENS_KIND", "Answer", "Client", "ContrastiveExplainer", "DefaultExplainer", "Detection",
           "EmbeddingScorer", "Example", "ExampleConfig", "Explainer", "Explanation", "Fuzz", "InterpConfig",
           "Interpretation", "Intruder", "LatentExamples", "NegativeSource", "OpenAIClient", "OpenRouterClient",
           "Recall", "Scorer", "Simulation", "Surprisal", "TopTokensExplainer", "TransformersClient", "auc",
           "build_examples", "classification", "compare_runs", "demo_preset", "draw_examples", "explain_and_score",
           "find_run", "interp_dir", "load_explanations", "make_client", "merge", "parse_marked", "pearson", "run",
           "top_token_explanations", "variant_names"]
