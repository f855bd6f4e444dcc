"""Language models: loading (hub, directory, GGUF, embedded) and hookpoints."""

from .embedded import EMBEDDED_MODELS, EmbeddedModel, cache_dir
from .hookpoints import Hookpoint, list_hookpoints, resolve_hookpoint
from .load import DEFAULT_MODEL, LoadedModel, load_model, parse_device, parse_dtype

__all__ = ["DEFAULT_MODEL", "EMBEDDED_MODELS", "EmbeddedModel", "Hookpoint", "LoadedModel", "cache_dir",
           "list_hookpoints", "load_model", "parse_device", "parse_dtype", "resolve_hookpoint"]
