"""Readers for other libraries' dictionary formats, one small module each.

Each module has `NAME`, `FILES` (what it looks for), `detect(path) -> bool` and
`load(path, device, dtype) -> SparseCoder`. Detection goes by file names, most specific first.
"""

from __future__ import annotations

from types import ModuleType

from . import (
               crosscoder_model_diff,
               dictionary_learning,
               dictionary_learning_crosscoder,
               gemmascope,
               llamascope,
               native,
               saelens,
               sparsify,
)

FORMATS: tuple[ModuleType, ...] = (native, saelens, sparsify, llamascope,
                                     # before dictionary_learning, which claims any .pt file
                                     crosscoder_model_diff, dictionary_learning_crosscoder,
                                     dictionary_learning, gemmascope)

__all__ = ["FORMATS"]
