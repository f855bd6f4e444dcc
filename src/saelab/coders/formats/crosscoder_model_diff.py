"""ckkissane/crosscoder-model-diff-replication (`crosscoder.py`, adapted from Neel Nanda's
Crosscoders code and copied widely): an L1 (ReLU) crosscoder on two models' activations.

Two layouts of the same files:
- Hub (`CrossCoder.load_from_hf`, e.g. ckkissane/crosscoder-gemma-2-2b-model-diff):
  `<hook_point>/cfg.json` + `<hook_point>/cc_weights.pt`.
- Local checkpoints (`CrossCoder.save`): `version_V/N_cfg.json` + `version_V/N.pt`, N = 0, 1, …
  (given the directory, the last checkpoint is read).

The `.pt` is a plain state dict (read with `torch.load(weights_only=True)`, never unpickled
otherwise): `W_enc [2, d_in, d_hidden]`, `b_enc [d_hidden]`, `W_dec [d_hidden, 2, d_in]`,
`b_dec [2, d_in]` — saelab's own crosscoder layout. The cfg holds `d_in`, `dict_size`,
`hook_point` (TransformerLens name), `model_name` (model 0, the base), `enc_dtype`, ….
Encode relu(Σ_m x_m W_enc[m] + b_enc) (the input is not shifted by b_dec), decode
f W_dec + b_dec. Model 0 is the base, model 1 the fine-tuned one.

During training each model's activations were multiplied by sqrt(d_model) / mean‖x‖
(`buffer.py`); those factors are not saved, so the coder expects activations scaled that way.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

from ...errors import FormatError
from ..base import SparseCoder
from ..config import CoderConfig
from .common import read_json_file, require
from .dictionary_learning import read_state_dict

log = logging.getLogger(__name__)

NAME = "crosscoder_model_diff"
CFG, WEIGHTS = "cfg.json", "cc_weights.pt"
FILES = (CFG, WEIGHTS)  # the Hub layout; local checkpoints are N_cfg.json + N.pt

_CHECKPOINT = re.compile(r"^(\d+)\.pt$")
_NOTE = ("trained on each model's activations multiplied by sqrt(d_model) / mean norm (buffer.py); "
         "the factors are not in the files")


def _checkpoints(directory: Path) -> dict[int, Path]:
    """N -> N.pt for every `N.pt` with its `N_cfg.json` in `directory`."""
    found = {}
    for p in directory.glob("*.pt"):
        m = _CHECKPOINT.match(p.name)
        if m and (directory / f"{m.group(1)}_cfg.json").is_file():
            found[int(m.group(1))] = p
    return found


def _files(path: Path) -> tuple[Path, Path] | None:
    """(weights, cfg) of a crosscoder at `path`, a directory or a `.pt` file; None if there is none."""
    if path.is_file():
        if path.suffix != ".pt":
            return None
        m = _CHECKPOINT.match(path.name)
        cfg = path.parent / (f"{m.group(1)}_cfg.json" if m else CFG)
        return (path, cfg) if cfg.is_file() else None
    if (path / WEIGHTS).is_file() and (path / CFG).is_file():
        return path / WEIGHTS, path / CFG
    found = _checkpoints(path) if path.is_dir() else {}
    if not found:
        return None
    last = max(found)
    return found[last], path / f"{last}_cfg.json"


def detect(path: Path) -> bool:
    """cfg.json + cc_weights.pt, or N_cfg.json + N.pt, whose cfg names `d_in` and `dict_size`."""
    files = _files(path)
    if files is None:
        return False
    try:
        raw = json.loads(files[1].read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return False
    return isinstance(raw, dict) and "d_in" in raw and "dict_size" in raw


def load(path: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> SparseCoder:
    """Read a crosscoder-model-diff-replication crosscoder (directory or `.pt` file)."""
    files = _files(path)
    if files is None:
        raise FormatError(f"{path}: no {CFG} + {WEIGHTS} and no N_cfg.json + N.pt; expected the files "
                          "CrossCoder.save or the Hub upload of crosscoder-model-diff-replication wrote.")
    file, cfg_path = files
    raw: dict[str, Any] = read_json_file(cfg_path)
    require(raw, ("d_in", "dict_size"), cfg_path)
    state = read_state_dict(file)
    require(state, ("W_enc", "b_enc", "W_dec", "b_dec"), file)
    d_in, d_sae = int(raw["d_in"]), int(raw["dict_size"])
    if tuple(state["W_enc"].shape) != (2, d_in, d_sae):
        raise FormatError(f"{file}: W_enc has shape {list(state['W_enc'].shape)}; {cfg_path.name} says "
                          f"[n_models=2, d_in={d_in}, dict_size={d_sae}] — the files do not belong together.")
    if path.is_dir() and file.name != WEIGHTS:
        log.info("%s: reading the last checkpoint, %s", path, file.name)
    log.warning("%s: %s; encode activations scaled the same way (Δnorm is unaffected)", file, _NOTE)
    cfg = CoderConfig(
        architecture="relu", d_in=d_in, d_sae=d_sae, kind="crosscoder", n_sources=2,
        hookpoint=str(raw.get("hook_point") or ""), model=str(raw.get("model_name") or ""),
        apply_b_dec_to_input=False, source_format=NAME,
        extra={"original_cfg": raw, "checkpoint": file.name, "note": _NOTE},
    )
    tensors = {k: state[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec")}
    return SparseCoder.from_tensors(cfg, tensors, where=str(file), device=device, dtype=dtype)
