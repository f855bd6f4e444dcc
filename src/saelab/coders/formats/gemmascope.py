"""Gemma Scope: `params.npz` with `W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `b_enc`, `b_dec`,
`threshold [d_sae]`. JumpReLU; the input is NOT shifted by b_dec:
latents = relu(pre) * (pre > threshold) with pre = x @ W_enc + b_enc.

Transcoders (`google/gemma-scope-2b-pt-transcoders`, `layer_17/width_16k/average_l0_8/params.npz`)
have the same five arrays (no skip, no b_dec shift) and read the MLP's input, the output of Gemma 2's
pre-feed-forward norm, to predict the MLP's output after its post-feed-forward norm (what is added to
the residual stream). A params.npz is a transcoder when its path names that release or `load` is
told `kind="transcoder"`.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from ...errors import ConfigError, FormatError, choices_message, first_line
from ..base import SparseCoder
from ..config import CoderConfig
from .common import require

NAME = "gemmascope"
FILE = "params.npz"
FILES = (FILE,)


# the release in a repo name, a Hugging Face cache folder (`models--google--gemma-scope-2b-pt-res`) or a local copy
RELEASE = re.compile(r"gemma-scope-(\d+b)-(pt|it)-(res|mlp|att|transcoders)")
_SITES = {"res": "resid_post", "mlp": "mlp_out"}  # "att" SAEs read hook_z (per head): no module-path alias
KINDS = ("sae", "transcoder")


def _transcoder_hookpoints(layer: str) -> tuple[str, str]:
    """(hookpoint, out_hookpoint) of a Gemma 2 transcoder at `layer`: MLP input and post-MLP-norm output."""
    return f"model.layers.{layer}.pre_feedforward_layernorm", f"model.layers.{layer}.post_feedforward_layernorm"


def _path_facts(file: Path) -> tuple[str | None, str | None, str, str]:
    """(layer, site, model id, kind) from a Gemma Scope path; None / "" where the path does not say."""
    text = file.absolute().as_posix()
    layer = re.search(r"/layer_(\d+)/", text)
    release = RELEASE.search(text)
    if release is None:
        return (layer.group(1) if layer else None), None, "", ""
    size, variant, site = release.groups()
    model = f"google/gemma-2-{size}" + ("-it" if variant == "it" else "")
    return (layer.group(1) if layer else None), site, model, "transcoder" if site == "transcoders" else "sae"


def hookpoint_and_model(file: Path) -> tuple[str, str]:
    """Hookpoint and model id from a Gemma Scope path such as
    `.../gemma-scope-2b-pt-res/.../layer_20/width_16k/average_l0_71/params.npz` (also the Hugging Face
    cache form `models--google--gemma-scope-2b-pt-res/snapshots/<sha>/layer_20/...`); empty where unknown.
    A transcoder's hookpoint is its input, `model.layers.N.pre_feedforward_layernorm`."""
    layer, site, model, _ = _path_facts(file)
    if layer is None or site is None:
        return "", model
    if site == "transcoders":
        return _transcoder_hookpoints(layer)[0], model
    return (f"{_SITES[site]}.{layer}" if site in _SITES else ""), model


def detect(path: Path) -> bool:
    return (path.is_file() and path.suffix == ".npz") or (path.is_dir() and (path / FILE).is_file())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an npz file (no pickles); a truncated or corrupt file raises FormatError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as e:
        msg = first_line(e)
        raise FormatError(f"{path}: not a readable npz file ({msg}); the file may be truncated or corrupt.") from None


def load(path: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
         kind: str | None = None) -> SparseCoder:
    """Read a Gemma Scope `params.npz` (or the directory holding it).

    kind: "sae" or "transcoder"; None takes it from the path (a `gemma-scope-*-transcoders` release
    is a transcoder, anything else an SAE).
    """
    if kind is not None and kind not in KINDS:
        raise ConfigError(choices_message("kind (Gemma Scope)", kind, KINDS,
                                          "Gemma Scope publishes SAEs and transcoders."))
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
    layer, site, model, path_kind = _path_facts(file)
    kind = kind or path_kind or "sae"
    if kind == "transcoder":
        hookpoint, out_hookpoint = _transcoder_hookpoints(layer) if layer is not None else ("", "")
        if layer is None:
            extra["note"] = "no layer_N folder in the path: hookpoints unknown"
    else:
        hookpoint = f"{_SITES[site]}.{layer}" if layer is not None and site in _SITES else ""
        out_hookpoint = None
    d_out = int(arrays["W_dec"].shape[-1])
    cfg = CoderConfig(architecture="jumprelu", d_in=int(d_in), d_sae=int(d_sae), kind=kind,
                      d_out=d_out if kind == "transcoder" else None, hookpoint=hookpoint, out_hookpoint=out_hookpoint,
                      model=model, apply_b_dec_to_input=False, source_format=NAME, extra=extra)
    return SparseCoder.from_tensors(cfg, tensors, where=str(file), device=device, dtype=dtype)
