"""saelab: train, evaluate and interpret sparse dictionaries on real language models.

The public API is this list; internals can move freely. Each stage of the data flow is here by its
config and its run function, `run_<stage>(config, workspace, ...) -> artifact`:

    tokens → activations → train → cache (latents) → eval / compare → cooc → sfal → match → interp → diff → report
    (finetune: a model pair for diff)

Names are imported on first use (`__getattr__` below), so `import saelab` does not load torch,
transformers or any stage until one is needed.

Example:
    >>> import saelab
    >>> ws, lm = saelab.Workspace.at("ws"), saelab.load_model("smollm2-135m", dtype="auto")
    >>> windows = saelab.run_tokens(saelab.TokensConfig(n_tokens=200_000), ws, lm)
    >>> spec = saelab.DictionarySpec("sae-4k", "resid_post.6", d_sae=4096, k=32)
    >>> saelab.run_train(saelab.TrainConfig((spec,), n_tokens=200_000), ws, lm, windows)
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

__version__ = "0.1.0"

_API: dict[str, str] = {
    # errors: every user mistake is a SaelabError with a one-line message
    "SaelabError": "errors", "ArtifactError": "errors", "ConfigError": "errors", "CorpusError": "errors",
    "FormatError": "errors", "HookpointError": "errors", "MissingPackageError": "errors", "ModelError": "errors",
    # the workspace every artifact lives in
    "Workspace": "workspace",
    # models and hookpoints
    "EMBEDDED_MODELS": "models", "Hookpoint": "models", "LoadedModel": "models", "list_hookpoints": "models",
    "load_model": "models", "resolve_hookpoint": "models",
    # corpora and token windows
    "Corpus": "data", "Document": "data", "TokenizeConfig": "data", "TokenWindows": "data", "load_corpus": "data",
    "load_token_windows": "data", "save_token_windows": "data", "tokenize_corpus": "data",
    "TokensConfig": "data.run", "run_tokens": "data.run:run",
    # activations
    "ActivationBatch": "activations", "ActivationReader": "activations", "ActivationStats": "activations",
    "StreamConfig": "activations", "stream_activations": "activations",
    "ActivationsConfig": "activations.run", "run_activations": "activations.run:run",
    # dictionaries, in any format saelab reads
    "CoderConfig": "coders", "ResolvedDictionary": "coders", "Selector": "coders", "SparseCoder": "coders",
    "load_dictionary": "coders", "resolve_dictionary": "coders",
    # training
    "TrainConfig": "train", "DictionarySpec": "train", "run_train": "train:run",
    # latent caches
    "CacheConfig": "latents", "LatentStore": "latents", "run_cache": "latents:run",
    # evaluation
    "EvalConfig": "evals", "run_eval": "evals", "compare": "evals",
    # co-occurrence and semantic–functional alignment
    "CoocConfig": "cooc", "run_cooc": "cooc:run",
    "SfalConfig": "sfal", "run_sfal": "sfal:run",
    # matching two dictionaries
    "MatchConfig": "match", "run_match": "match:run", "FeatureMatcher": "match", "MatchReport": "match",
    "load_context": "match",
    # auto-interpretation
    "InterpConfig": "interp", "ExampleConfig": "interp", "run_interp": "interp:run",
    "draw_examples": "interp", "explain_and_score": "interp",  # run_interp's two steps, for chosen latents
    # model diffing: a model pair (`saelab.finetune.finetune` makes one), a crosscoder, named latents
    "DiffConfig": "diff", "run_feature_interpretation_pipeline": "diff", "CrosscoderConfig": "train",
    "train_crosscoder": "train", "load_crosscoder": "coders",
    # the static HTML report
    "ReportConfig": "report", "run_report": "report:run",
}
"""Public name → `module` (the same name there) or `module:name`, under `saelab.`."""

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    """Import a public name on first use (then it is a plain attribute), or a subpackage (`saelab.coders`)."""
    where = _API.get(name)
    if where is not None:
        module, _, attr = where.partition(":")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr or name)
        globals()[name] = value
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
