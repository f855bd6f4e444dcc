"""Configuration of an auto-interpretation run (DESIGN.md §5 "Auto-interpretation").

Field names follow delphi's CLI (`n_examples_train`, `min_examples`, …) so its users
recognise them; defaults are delphi's where they make sense on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError, choices_message

TrainType = Literal["top", "random", "quantiles", "mix"]
NonActivatingSource = Literal["random", "neighbours", "FAISS"]
TRAIN_TYPES = ("top", "random", "quantiles", "mix")
NON_ACTIVATING_SOURCES = ("random", "neighbours", "FAISS")


@dataclass(frozen=True)
class ExampleConfig:
    """How examples are cut from the latent store."""

    example_ctx_len: int = 32
    """Tokens per example. Store windows are cut into chunks of this length; a chunk where the
    latent fires is an activating example (delphi's convention)."""
    center_examples: bool = True
    """Centre each activating example on its maximum activation (False: the fixed chunk)."""
    n_quantiles: int = 10
    """Groups of activating examples by maximum activation, for quantile sampling."""
    n_examples_train: int = 40
    """Activating examples shown to the explainer."""
    n_examples_test: int = 50
    """Activating examples used for scoring, quantile-stratified, never among the training ones."""
    n_non_activating: int = 50
    """Non-activating examples used for scoring (and shown by the contrastive explainer)."""
    min_examples: int = 200
    """Latents with fewer activating examples are skipped (and listed as skipped)."""
    train_type: TrainType = "top"
    """Training examples: `top` (strongest), `random`, `quantiles` (stratified), `mix` (half top, half quantiles)."""
    non_activating_source: NonActivatingSource = "random"
    """`random` windows; `neighbours` (where a co-occurring latent fires but this one does not; needs
    co-occurrence counts, computed sparsely if missing); `FAISS` (nearest non-activating windows to the
    top activating ones by sentence embedding; embeddings cached on disk)."""
    filter_bos: bool = True
    """Drop activations on BOS / special / sink positions (the store already excludes those it was told to)."""
    seed: int = 0
    """Seed of every random draw (examples, negatives, shuffled baseline)."""

    def __post_init__(self) -> None:
        for name in ("example_ctx_len", "n_quantiles", "n_examples_train", "n_examples_test", "n_non_activating"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: got {getattr(self, name)}; expected a positive integer.")
        if self.min_examples < 0:
            raise ConfigError(f"min_examples: got {self.min_examples}; expected ≥ 0.")
        if self.train_type not in TRAIN_TYPES:
            raise ConfigError(choices_message("train_type", self.train_type, TRAIN_TYPES))
        if self.non_activating_source not in NON_ACTIVATING_SOURCES:
            raise ConfigError(choices_message("non_activating_source", self.non_activating_source,
                                              NON_ACTIVATING_SOURCES))


@dataclass(frozen=True)
class InterpConfig:
    """A whole run: which latents, which explainer, which scorers, which client."""

    examples: ExampleConfig = field(default_factory=ExampleConfig)
    """How examples are drawn."""
    max_latents: int | None = None
    """Explain the first N latents that have enough examples (None: all)."""
    latents: tuple[int, ...] | None = None
    """Explicit latent ids (overrides max_latents' choice of which ones)."""
    explainer: str = "default"
    """`default`, `contrastive`, or `top-tokens` (no LLM)."""
    scorers: tuple[str, ...] = ("detection", "fuzz", "embedding")
    """Scorers to run: detection, fuzz, recall, simulation, intruder, embedding, surprisal."""
    explainer_provider: str = "transformers"
    """`transformers` (in-process), `openai` (any OpenAI-compatible server), `openrouter`."""
    explainer_model: str = "qwen2.5-coder-1.5b"
    """Model name: an embedded name, HF directory, .gguf, or the server's model name."""
    base_url: str | None = None
    """Server URL for `openai` (e.g. http://127.0.0.1:8080/v1); `openrouter` fills it in."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (the key itself is never stored)."""
    explainer_model_max_len: int = 4096
    """Longest prompt (tokens) given to the in-process model; longer prompts drop examples."""
    max_new_tokens: int = 60
    """Tokens generated per explanation."""
    num_examples_per_scorer_prompt: int = 1
    """Examples per detection / fuzz / recall prompt. 1: one yes/no question per example (read from
    log-probs by the in-process client). More: the examples of a prompt are answered by one generated
    list like `[1, 0, 1]` (delphi's batching; a list of the wrong length fails all of them)."""
    n_intruder_examples: int = 5
    """Texts per intruder question (one of them the intruder; chance = 1/N); 2..9."""
    batch_size: int = 8
    """Prompts per forward pass (transformers) or requests in flight (openai)."""
    show_activations: bool = False
    """Show activation values 0–10 after each marked token in the explainer prompt."""
    dtype: str = "auto"
    """In-process explainer dtype (`auto`: bf16 where the device multiplies it fast, else float32)."""
    timeout_s: float = 60.0
    """Per-request timeout of the openai client."""
    max_retries: int = 4
    """Retries per request on 429 / 5xx / timeout / unreadable answer."""
    retry_backoff_s: float = 1.0
    """First wait before a retry (doubles each time) when the server sends no Retry-After."""

    def __post_init__(self) -> None:
        from .registry import EXPLAINERS, PROVIDERS, SCORERS

        if self.explainer not in EXPLAINERS:
            raise ConfigError(choices_message("explainer", self.explainer, sorted(EXPLAINERS)))
        if self.explainer_provider not in PROVIDERS:
            raise ConfigError(choices_message("explainer_provider", self.explainer_provider, PROVIDERS))
        bad = [s for s in self.scorers if s not in SCORERS]
        if bad or not self.scorers:
            raise ConfigError(choices_message("scorers", bad or [], sorted(SCORERS)))
        for name in ("explainer_model_max_len", "max_new_tokens", "num_examples_per_scorer_prompt", "batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: got {getattr(self, name)}; expected a positive integer.")
        if not 2 <= self.n_intruder_examples <= 9:
            raise ConfigError(f"n_intruder_examples: got {self.n_intruder_examples}; expected 2..9 (the options "
                              "are labelled with one digit).")
        if self.max_latents is not None and self.max_latents <= 0:
            raise ConfigError(f"max_latents: got {self.max_latents}; expected a positive integer or None.")
        if self.max_retries < 0 or self.timeout_s <= 0:
            raise ConfigError(f"max_retries, timeout_s: got {self.max_retries}, {self.timeout_s}; "
                              "expected ≥ 0 and > 0.")


def demo_preset(max_latents: int = 8, explainer_model: str = "smollm2-135m") -> InterpConfig:
    """A fast preset for `saelab demo`: a handful of latents, short prompts, log-prob detection and the
    embedding scorer (no generated judge answers). SmolLM2-135M explains poorly: it proves the pipeline,
    not the latents; pass explainer_model="qwen2.5-coder-1.5b" for real explanations."""
    return InterpConfig(examples=ExampleConfig(n_examples_train=12, n_examples_test=10, n_non_activating=10,
                                               min_examples=30),
                        max_latents=max_latents, explainer="default", explainer_model=explainer_model,
                        scorers=("detection", "embedding"), batch_size=8, max_new_tokens=40)
