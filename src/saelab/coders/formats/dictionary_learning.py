"""saprmarks/dictionary_learning: `ae.pt` (a plain state dict) + `config.json` (`{"trainer": {...}}`).

The class comes from `trainer.dict_class` (or `trainer.trainer_class`):
- AutoEncoder (StandardTrainer, L1): `encoder.weight [d_sae, d_in]`, `encoder.bias`,
  `decoder.weight [d_in, d_sae]`, `bias [d_in]`; encode relu(encoder(x − bias)).
- JumpReluAutoEncoder: `W_enc [d_in, d_sae]`, `b_enc`, `W_dec [d_sae, d_in]`, `b_dec`,
  `threshold [d_sae]`; the input is not shifted by b_dec.
- AutoEncoderTopK / BatchTopKSAE: `encoder.*`, `decoder.weight`, `b_dec`, `k`, `threshold`
  (scalar); encode from x − b_dec; TopK per token, BatchTopK with its learned threshold.
- MatryoshkaBatchTopKSAE: `W_enc`, `b_enc`, `W_dec`, `b_dec`, `k`, `threshold`, `group_sizes`.

`ae.pt` is read with `torch.load(weights_only=True)`: it is never unpickled otherwise.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...errors import FormatError, first_line
from ..base import SparseCoder
from ..config import CoderConfig
from .common import read_json_file, require

NAME = "dictionary_learning"
WEIGHTS, CONFIG = "ae.pt", "config.json"
FILES = (WEIGHTS, CONFIG)

_CLASSES = {  # dict_class -> saelab architecture
    "AutoEncoder": "relu", "JumpReluAutoEncoder": "jumprelu", "AutoEncoderTopK": "topk",
    "BatchTopKSAE": "batchtopk", "MatryoshkaBatchTopKSAE": "matryoshka",
}
_TRAINERS = {  # trainer_class -> dict_class, for configs without dict_class
    "StandardTrainer": "AutoEncoder", "StandardTrainerAprilUpdate": "AutoEncoder", "PAnnealTrainer": "AutoEncoder",
    "JumpReluTrainer": "JumpReluAutoEncoder", "TopKTrainer": "AutoEncoderTopK", "BatchTopKTrainer": "BatchTopKSAE",
    "MatryoshkaBatchTopKTrainer": "MatryoshkaBatchTopKSAE",
}


def detect(path: Path) -> bool:
    return (path.is_dir() and (path / WEIGHTS).is_file()) or (path.is_file() and path.suffix == ".pt")


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A plain state dict from a torch pickle, loaded with weights_only=True."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        why = f"it holds a {found.group(1)}" if found else "it holds objects other than tensors"
        raise FormatError(f"{path}: not a plain state dict — torch.load(weights_only=True) refused it ({why}); "
                          "saelab never unpickles arbitrary objects. Re-save it as a state dict of tensors.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = first_line(e, 160)
        raise FormatError(f"{path}: not a readable torch file ({first}); it may be truncated or corrupt.") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise FormatError(f"{path}: got a {type(state).__name__}, not a state dict of tensors.")
    return state


def _dict_class(trainer: dict[str, Any], state: dict[str, Tensor], where: Path) -> str:
    name = trainer.get("dict_class") or _TRAINERS.get(trainer.get("trainer_class", ""))
    if name is None:  # no config: infer where the tensors are unambiguous
        if "group_sizes" in state:
            name = "MatryoshkaBatchTopKSAE"
        elif "bias" in state and "encoder.weight" in state:
            name = "AutoEncoder"
        elif "W_enc" in state and "threshold" in state and state["threshold"].ndim == 1:
            name = "JumpReluAutoEncoder"
    if name not in _CLASSES:
        got = name or trainer.get("trainer_class") or "no config.json"
        raise FormatError(f"{where}: dictionary class {got!r} is not supported; saelab reads "
                          f"{', '.join(_CLASSES)} (put the trainer's config.json beside ae.pt).")
    return name


def _tensors(name: str, state: dict[str, Tensor], where: Path) -> dict[str, Tensor]:
    """dictionary_learning tensors -> saelab's names and layouts."""
    if name in ("JumpReluAutoEncoder", "MatryoshkaBatchTopKSAE"):
        require(state, ("W_enc", "b_enc", "W_dec", "b_dec"), where)
        out = {k: state[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
    else:
        require(state, ("encoder.weight", "encoder.bias", "decoder.weight"), where)
        out = {"W_enc": state["encoder.weight"].T,  # [d_sae, d_in] -> [d_in, d_sae]
               "b_enc": state["encoder.bias"],
               "W_dec": state["decoder.weight"].T,  # [d_in, d_sae] -> [d_sae, d_in]
               "b_dec": state["bias"] if name == "AutoEncoder" else state.get("b_dec")}
        if out["b_dec"] is None:
            raise FormatError(f"{where}: missing b_dec; found {', '.join(sorted(state))}.")
    if name != "AutoEncoder" and name != "AutoEncoderTopK":
        require(state, ("threshold",), where)
        out["threshold"] = state["threshold"]
    return out


def _hookpoint(trainer: dict[str, Any]) -> str:
    sub = trainer.get("submodule_name") or ""
    m = re.fullmatch(r"(resid_post|resid_pre|mlp_out|attn_out)_layer_(\d+)", sub)
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    return sub or (f"resid_post.{trainer['layer']}" if isinstance(trainer.get("layer"), int) else "")


def load(path: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> SparseCoder:
    """Read a dictionary_learning `ae.pt` (+ `config.json`) directory, or the `ae.pt` file itself."""
    file = path if path.is_file() else path / WEIGHTS
    config_path = file.parent / CONFIG
    trainer = read_json_file(config_path).get("trainer", {}) if config_path.is_file() else {}
    state = read_state_dict(file)
    name = _dict_class(trainer, state, file)
    architecture = _CLASSES[name]
    tensors = _tensors(name, state, file)
    d_in, d_sae = tensors["W_enc"].shape
    k = None
    if architecture in ("topk", "batchtopk", "matryoshka"):
        k = int(state["k"]) if "k" in state else trainer.get("k")
        if k is None:
            raise FormatError(f"{file}: a {name} without k (looked in the state dict and config.json).")
    groups = None
    if architecture == "matryoshka":
        sizes = state["group_sizes"].tolist() if "group_sizes" in state else trainer.get("group_sizes") or []
        groups = tuple(int(g) for g in sizes)
    extra: dict = {"dict_class": name, "original_cfg": trainer}
    if "norm_factor" in trainer:
        extra["norm_factor"] = trainer["norm_factor"]  # already folded into the biases at save time
    cfg = CoderConfig(
        architecture=architecture, d_in=int(d_in), d_sae=int(d_sae), k=k,
        hookpoint=_hookpoint(trainer), model=trainer.get("lm_name") or "",
        apply_b_dec_to_input=name != "JumpReluAutoEncoder", group_sizes=groups,
        source_format=NAME, extra=extra,
    )
    return SparseCoder.from_tensors(cfg, tensors, where=str(file), device=device, dtype=dtype)
