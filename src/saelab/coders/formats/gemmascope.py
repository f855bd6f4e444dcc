"""Gemma Scope: `params.npz` with `W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `b_enc`, `b_dec`,
`threshold [d_sae]`. JumpReLU; the input is NOT shifted by b_dec:
latents = relu(pre) * (pre > threshold) with pre = x @ W_enc + b_enc.
"""

from __future__ import annotations

import re
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


_RELEASE = re.compile(r"gemma-scope-(\d+b)-(pt|it)-(res|mlp|att)")
_SITES = {"res": "resid_post", "mlp": "mlp_out"}  # "att" SAEs read hook_z (per head): no module-path alias


def hookpoint_and_model(file: Path) -> tuple[str, str]:
    """Hookpoint alias and model id from a Gemma Scope path such as
    `.../gemma-scope-2b-pt-res/.../layer_20/width_16k/average_l0_71/params.npz`; empty where unknown."""
    text = file.absolute().as_posix()
    layer = re.search(r"/layer_(\d+)/", text)
    release = _RELEASE.search(text)
    if release is None:
        return "", ""
    size, variant, site = release.groups()
    model = f"google/gemma-2-{size}" + ("-it" if variant == "it" else "")
    hookpoint = f"{_SITES[site]}.{layer.group(1)}" if layer and site in _SITES else ""
    return hookpoint, model


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
    hookpoint, model = hookpoint_and_model(file)
    cfg = CoderConfig(architecture="jumprelu", d_in=int(d_in), d_sae=int(d_sae), hookpoint=hookpoint, model=model,
                      apply_b_dec_to_input=False, source_format=NAME, extra=extra)
    return SparseCoder.from_tensors(cfg, tensors, where=str(file), device=device, dtype=dtype)
