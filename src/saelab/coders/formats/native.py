"""saelab's native format: `cfg.json` (format "saelab.sparse_coder/1") + `weights.safetensors`."""

from __future__ import annotations

from pathlib import Path

import torch

from ..base import WEIGHTS_NAME, SparseCoder, read_native_cfg
from .common import read_safetensors

NAME = "saelab"
FILES = ("cfg.json", WEIGHTS_NAME)


def detect(path: Path) -> bool:
    """A directory holding saelab's cfg.json + weights.safetensors."""
    return path.is_dir() and all((path / f).is_file() for f in FILES)


def load(path: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> SparseCoder:
    """Read a dictionary written by `SparseCoder.save`."""
    cfg = read_native_cfg(path)
    tensors = read_safetensors(path / WEIGHTS_NAME)
    return SparseCoder.from_tensors(cfg, tensors, where=str(path / WEIGHTS_NAME), device=device, dtype=dtype)


load_native = load
