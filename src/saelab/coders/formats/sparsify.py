"""EleutherAI sparsify: `<hookpoint>/cfg.json` + `sae.safetensors`.

Tensors: `encoder.weight [F, d]`, `encoder.bias [F]`, `W_dec [F, d]`, `b_dec [d]`, optional
`W_skip [d, d]`. Encode = top-k of relu(encoder(x − b_dec)); transcoders (`transcode`) do
not subtract b_dec. The directory name is the hookpoint, relative to the model's base
model (`layers.6`, `layers.6.mlp`); a transcoder reads the module's input and predicts its
output.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import FormatError
from ..base import SparseCoder
from ..config import CoderConfig
from .common import read_json_file, read_safetensors, require

NAME = "sparsify"
FILES = ("cfg.json", "sae.safetensors")


def detect(path: Path) -> bool:
    return path.is_dir() and all((path / f).is_file() for f in FILES)


def load(path: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> SparseCoder:
    """Read a sparsify SparseCoder directory."""
    cfg_path, weights_path = path / "cfg.json", path / "sae.safetensors"
    raw = read_json_file(cfg_path)
    require(raw, ("d_in", "k"), cfg_path)
    if raw.get("activation", "topk") != "topk":
        raise FormatError(f"{cfg_path}: activation is {raw['activation']!r}; saelab reads sparsify coders with "
                          "activation 'topk' only.")
    tensors = read_safetensors(weights_path)
    require(tensors, ("encoder.weight", "encoder.bias", "W_dec", "b_dec"), weights_path)
    d_sae, d_in = tensors["encoder.weight"].shape  # [F, d]
    if d_in != raw["d_in"]:
        raise FormatError(f"{weights_path}: encoder.weight is {list(tensors['encoder.weight'].shape)} but "
                          f"cfg.json says d_in={raw['d_in']}; the files do not belong together.")
    transcode = bool(raw.get("transcode", False))
    name = path.name
    cfg = CoderConfig(
        architecture="topk", d_in=d_in, d_sae=d_sae, k=int(raw["k"]),
        kind="transcoder" if transcode else "sae",
        hookpoint=f"{name}:input" if transcode else name,
        out_hookpoint=name if transcode else None,
        skip="W_skip" in tensors,
        apply_b_dec_to_input=not transcode,
        source_format=NAME,
        extra={"original_cfg": raw, "hookpoint_relative_to": "base_model"},
    )
    ours = {
        "W_enc": tensors["encoder.weight"].T,  # [d, F]
        "b_enc": tensors["encoder.bias"],
        "W_dec": tensors["W_dec"],  # [F, d]
        "b_dec": tensors["b_dec"],
    }
    if "W_skip" in tensors:
        ours["W_skip"] = tensors["W_skip"]  # [d_out, d_in], applied as x @ W_skip.T
    return SparseCoder.from_tensors(cfg, ours, where=str(weights_path), device=device, dtype=dtype)
