"""Helpers shared by the format readers: reading files with one-line `FormatError`s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from ..._io import read_json_object
from ...errors import FormatError, first_line


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """All tensors of a safetensors file; a truncated or corrupt file raises FormatError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise FormatError(f"{path}: not a readable safetensors file ({first_line(e)}); "
                          "the file may be truncated or corrupt — copy it again.") from None


def read_json_file(path: Path) -> dict[str, Any]:
    """A JSON object; invalid JSON, non-UTF-8 bytes or another JSON type raise FormatError."""
    return read_json_object(path, "a dictionary's config")


def require(cfg: dict[str, Any], keys: tuple[str, ...], where: Path) -> None:
    """Raise FormatError naming the keys of `keys` missing from `cfg`."""
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise FormatError(f"{where}: missing {', '.join(missing)}; found keys {', '.join(sorted(cfg)) or 'none'}.")


