"""`load_dictionary`: read any supported format, detected from the files; `describe_dictionary`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import FormatError, choices_message
from .base import SparseCoder
from .formats import FORMATS

log = logging.getLogger(__name__)


def _looked_for() -> str:
    return "; ".join(f"{m.NAME}: {' + '.join(m.FILES)}" for m in FORMATS)


def _detect(path: Path):
    return next((m for m in FORMATS if m.detect(path)), None)


def _subdirectories(path: Path) -> dict[str, Path]:
    """Sub-directories (one level, then two: sparsify `layers.6`, SAELens `blocks.6/...`) in a known format."""
    found = {p.name: p for p in sorted(path.iterdir()) if p.is_dir() and _detect(p)}
    if not found:
        found = {f"{p.parent.name}/{p.name}": p for p in sorted(path.glob("*/*")) if p.is_dir() and _detect(p)}
    return found


def resolve_dictionary_path(path: str | os.PathLike, hookpoint: str | None = None) -> Path:
    """The directory or file that holds one dictionary: `path` itself, or `path/hookpoint` in a run
    directory with one sub-directory per hookpoint (sparsify). Raises FormatError listing what exists."""
    path = Path(path)
    if not path.exists():
        raise FormatError(f"dictionary path {str(path)!r} does not exist.")
    if hookpoint is None and _detect(path):
        return path
    if path.is_dir():
        subs = _subdirectories(path)
        if hookpoint is not None:
            if hookpoint in subs:
                return subs[hookpoint]
            raise FormatError(choices_message(f"hookpoint (in {path})", hookpoint, list(subs) or ["none found"]))
        if len(subs) == 1:
            (name, sub), = subs.items()
            log.info("%s holds one dictionary, %s; reading it", path, name)
            return sub
        if subs:
            raise FormatError(f"{path} holds {len(subs)} dictionaries ({', '.join(subs)}); "
                              "pick one with hookpoint=… (CLI: --hookpoint).")
    raise FormatError(f"{path}: not a dictionary in any known format; looked for {_looked_for()}.")


def load_dictionary(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                    hookpoint: str | None = None) -> SparseCoder:
    """Load a sparse dictionary from saelab's native format, SAELens, Gemma Scope, sparsify or
    dictionary_learning; the format is detected from the files.

    Args:
        path: a dictionary directory (or a `params.npz` / `ae.pt` file), or a run directory
            with one sub-directory per hookpoint.
        device, dtype: where to put the weights; dtype None keeps the stored dtype.
        hookpoint: the sub-directory to read in a run directory holding several dictionaries.

    Example:
        >>> coder = load_dictionary("runs/sparsify/layers.6")
        >>> latents = coder.encode(x)   # x [N, d_in] -> [N, d_sae]
    """
    resolved = resolve_dictionary_path(path, hookpoint)
    fmt = _detect(resolved)
    assert fmt is not None
    coder = fmt.load(resolved, device=device, dtype=dtype)
    log.info("loaded %s dictionary from %s: %s", fmt.NAME, resolved, coder.extra_repr())
    return coder.eval()


def describe_dictionary(path: str | os.PathLike, hookpoint: str | None = None) -> dict[str, Any]:
    """What a dictionary is: architecture, kind, widths, k, hookpoints, source format, model, parameter count."""
    coder = load_dictionary(path, device="cpu", hookpoint=hookpoint)
    c = coder.cfg
    return {
        "path": str(resolve_dictionary_path(path, hookpoint)),
        "architecture": c.architecture, "kind": c.kind, "d_in": c.d_in, "d_sae": c.d_sae, "d_out": coder.d_out,
        "k": c.k, "n_sources": c.n_sources, "hookpoint": c.hookpoint, "out_hookpoint": c.out_hookpoint,
        "source_format": c.source_format, "model": c.model, "skip": c.skip,
        "apply_b_dec_to_input": c.apply_b_dec_to_input, "group_sizes": c.group_sizes,
        "dtype": str(coder.dtype).removeprefix("torch."),
        "n_params": sum(p.numel() for p in coder.parameters()),
    }
