"""Language models: loading (hub, directory, GGUF, embedded, `random:` controls) and hookpoints.

Names are imported on first use (`__getattr__` below), so a light submodule (`saelab.models.defaults`, which the
command line reads for its defaults) does not load torch and transformers with this package.
"""

from __future__ import annotations

import importlib
from typing import Any

_API: dict[str, str] = {
    "DEFAULT_MODEL": "defaults", "EMBEDDED_MODELS": "embedded", "EmbeddedModel": "embedded", "cache_dir": "embedded",
    "Hookpoint": "hookpoints", "list_hookpoints": "hookpoints", "resolve_hookpoint": "hookpoints",
    "LoadedModel": "load", "load_model": "load", "parse_device": "load", "parse_dtype": "load",
    "RandomSpec": "random_init", "parse_random_spec": "random_init",
}
"""Public name → the submodule that defines it."""

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
