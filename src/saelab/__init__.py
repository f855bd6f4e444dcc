"""saelab: train, evaluate and interpret sparse dictionaries on real language models.

The public API is this list; internals can move freely.
"""

__version__ = "0.1.0"

from .activations import ActivationBatch, ActivationReader, ActivationStats, StreamConfig, stream_activations
from .data import (Corpus, Document, TokenizeConfig, TokenWindows, load_corpus, load_token_windows, save_token_windows,
                   tokenize_corpus)
from .errors import (ArtifactError, ConfigError, CorpusError, FormatError, HookpointError, MissingPackageError,
                     ModelError, SaelabError)
from .models import EMBEDDED_MODELS, Hookpoint, LoadedModel, list_hookpoints, load_model, resolve_hookpoint
from .workspace import Workspace
from .coders import CoderConfig, ResolvedDictionary, Selector, SparseCoder, load_dictionary, resolve_dictionary
from .latents import LatentStore
from .evals import EvalConfig, compare, run_eval

__all__ = [
    "CoderConfig", "EvalConfig", "LatentStore", "ResolvedDictionary", "Selector", "SparseCoder", "compare",
    "load_dictionary", "resolve_dictionary", "run_eval",
    "ActivationBatch", "ActivationReader", "ActivationStats", "ArtifactError", "ConfigError", "Corpus", "CorpusError",
    "Document", "EMBEDDED_MODELS", "FormatError", "Hookpoint", "HookpointError", "LoadedModel", "MissingPackageError",
    "ModelError", "SaelabError", "StreamConfig", "TokenWindows", "TokenizeConfig", "Workspace", "list_hookpoints",
    "load_corpus", "load_model", "load_token_windows", "resolve_hookpoint", "save_token_windows", "stream_activations",
    "tokenize_corpus",
]
