"""Gemma Scope: `params.npz` with `W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `b_enc`, `b_dec`,
`threshold [d_sae]`. JumpReLU; the input is NOT shifted by b_dec:
latents = relu(pre) * (pre > threshold) with pre = x @ W_enc + b_enc.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ...errors import FormatError
from ..base import SparseCoder
from ..config import CoderConfig
from .common import require

NAME = "gemmascope"
FILE = "params.npz"
FILES = (FILE,)


def detect(path: Path) -> bool:
    return (path.is_file() and path.suffix == ".npz") or (path.is_dir() and (path / FILE).is_file())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an npz file (no pickles); a truncated or corrupt file raises FormatError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as e:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise FormatError(f"{path}: not a readable npz file ({msg}); the file may be truncated or corrupt.") from None


def load(path: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> SparseCoder:
    """Read a Gemma Scope `params.npz` (or the directory holding it)."""
    file = path if path.is_file() else path / FILE
    arrays = {k.replace("w_", "W_", 1) if k.startswith("w_") else k: v for k, v in read_npz(file).items()}
    require(arrays, ("W_enc", "W_dec", "b_enc", "b_dec", "threshold"), file)
    if arrays["W_enc"].ndim != 2:
        raise FormatError(f"{file}: W_enc has shape {list(arrays['W_enc'].shape)}; expected [d_in, d_sae].")
    d_in, d_sae = arrays["W_enc"].shape
    extra: dict = {"path": str(file)}
    tensors = {name: torch.from_numpy(np.ascontiguousarray(arrays[name]))
               for name in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")}
    if "scaling_factor" in arrays:
        scale = torch.from_numpy(arrays["scaling_factor"])
        if not torch.all(scale == 1):
            tensors["W_dec"] = tensors["W_dec"] * scale.reshape(-1, 1)  # decode(f * s) = f @ (s * W_dec)
            extra["folded_scaling_factor"] = True
    cfg = CoderConfig(architecture="jumprelu", d_in=int(d_in), d_sae=int(d_sae), apply_b_dec_to_input=False,
                      source_format=NAME, extra=extra)
    return SparseCoder.from_tensors(cfg, tensors, where=str(file), device=device, dtype=dtype)
