"""Llama Scope (OpenMOSS lm-saes, now llamascopium). Two layouts per dictionary directory:

- As published (`fnlp/Llama3_1-8B-Base-LXR-8x/Llama3_1-8B-Base-L15R-8x/`, lm-saes 1.0):
  `hyperparams.json` + `checkpoints/final.safetensors` with `encoder.weight [d_sae, d_model]`,
  `encoder.bias`, `decoder.weight [d_model, d_sae]`, `decoder.bias`; one scalar
  `jump_relu_threshold`. lm-saes reads it by folding the dataset-wise norms
  (s = sqrt(d_model) / dataset_average_activation_norm["in" | "out"]: b_enc /= s_in,
  b_dec /= s_out, W_dec *= s_in / s_out), then the decoder norms (unit W_dec rows, W_enc and
  b_enc scaled up), then gating pre > jump_relu_threshold; a TopK SAE with a threshold > 0 is
  read as JumpReLU (its TopK->JumpReLU post-processing). saelab does the same folds.
- llamascopium 2 (`save_pretrained` + `save_hyperparameters`): `config.json` (`sae_type`) +
  `sae_weights.safetensors` (or `checkpoints/final.safetensors`) with `W_E [d_model, d_sae]`, `b_E`,
  `W_D [d_sae, d_model]`, `b_D`, `activation_function.log_jumprelu_threshold`,
  `dataset_average_activation_norm.<hook>`. Its dataset-wise forward is normalise x, encode, decode,
  divide by s_out, with the gate on pre * ‖W_D row‖ (`sparsity_include_decoder_norm`); saelab folds
  s_in into W_enc and s_out into the decoder, so latents keep llamascopium's normalised scale.
  (llamascopium's own `fold_activation_scale=True` leaves the JumpReLU threshold unscaled, which
  changes which latents fire; saelab follows the dataset-wise path it trains with.)

Hook names are TransformerLens's (`blocks.15.hook_resid_post`); in != out makes a transcoder.
The site letter of the folder name (R resid_post, A attn_out, M mlp_out, TC transcoder) is kept
in `extra["site"]`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...errors import FormatError
from ..base import SparseCoder
from ..config import CoderConfig
from .common import read_json_file, read_safetensors, require

NAME = "llamascope"
FILES = ("hyperparams.json", "checkpoints/final.safetensors")
"""The published layout; `LLAMASCOPIUM_FILES` is llamascopium 2's."""
LLAMASCOPIUM_FILES = ("config.json", "sae_weights.safetensors")
FILE_SETS = (FILES, LLAMASCOPIUM_FILES)

_WEIGHTS = ("sae_weights.safetensors", "checkpoints/final.safetensors")  # both libraries' order of preference
_SITE = re.compile(r"-L(\d+)(R|A|M|TC)-(\d+)x$")
_MODELS = {"Llama3_1-8B-Base": "meta-llama/Llama-3.1-8B"}
_ACTIVATIONS = ("relu", "jumprelu", "topk")


def _weights(path: Path) -> Path | None:
    return next((path / w for w in _WEIGHTS if (path / w).is_file()), None)


def _is_llamascopium_config(path: Path) -> bool:
    try:
        return "sae_type" in read_json_file(path)
    except (FormatError, OSError):
        return False


def detect(path: Path) -> bool:
    if not path.is_dir() or _weights(path) is None:
        return False
    return (path / "hyperparams.json").is_file() or (
        (path / "config.json").is_file() and _is_llamascopium_config(path / "config.json"))


def _scales(cfg: dict[str, Any], norms: dict[str, float], where: Path) -> tuple[float, float]:
    """(s_in, s_out): the factors the input and label were multiplied by in training."""
    mode = cfg.get("norm_activation", "dataset-wise")
    if mode in ("inference", "none", None):
        return 1.0, 1.0
    if mode != "dataset-wise":
        raise FormatError(f"{where}: norm_activation={mode!r} is not supported; saelab reads Llama Scope "
                          "dictionaries normalised 'dataset-wise' (a fixed scale, foldable into the weights) or "
                          "'inference' (already folded); 'token-wise' / 'batch-wise' depend on each input.")
    missing = [k for k in ("in", "out") if not norms.get(k)]
    if missing:
        raise FormatError(f"{where}: norm_activation is 'dataset-wise' but dataset_average_activation_norm has no "
                          f"{' / '.join(missing)} value; expected the average activation norm of each hookpoint.")
    d = int(cfg["d_model"])
    return math.sqrt(d) / float(norms["in"]), math.sqrt(d) / float(norms["out"])


def _check(cfg: dict[str, Any], where: Path) -> str:
    require(cfg, ("d_model", "hook_point_in"), where)
    if cfg.get("use_glu_encoder"):
        raise FormatError(f"{where}: use_glu_encoder is true; saelab reads Llama Scope dictionaries with a plain "
                          "linear encoder only.")
    act = str(cfg.get("act_fn", "relu")).lower()
    if act not in _ACTIVATIONS:
        raise FormatError(f"{where}: act_fn {act!r} is not supported; saelab reads {', '.join(_ACTIVATIONS)}.")
    return act


def _published(cfg: dict[str, Any], state: dict[str, Tensor], where: Path, cfg_path: Path):
    """lm-saes 1.0: tensors and activation as its `SparseAutoEncoder.from_config` folds them."""
    require(state, ("encoder.weight", "encoder.bias", "decoder.weight"), where)
    act = _check(cfg, cfg_path)
    s_in, s_out = _scales(cfg, cfg.get("dataset_average_activation_norm") or {}, cfg_path)
    W_enc = state["encoder.weight"].T.float()  # [d_sae, d] -> [d, d_sae]
    b_enc = state["encoder.bias"].float() / s_in
    W_dec = state["decoder.weight"].T.float() * (s_in / s_out)  # [d, d_sae] -> [d_sae, d]
    b_dec = state["decoder.bias"].float() / s_out if "decoder.bias" in state else torch.zeros(W_dec.shape[1])
    if cfg.get("sparsity_include_decoder_norm", True):
        norms = W_dec.norm(dim=-1)  # [d_sae]
        W_enc, b_enc, W_dec = W_enc * norms, b_enc * norms, W_dec / norms[:, None]
    theta = float(cfg.get("jump_relu_threshold", 0.0))
    if act == "jumprelu" or (act == "topk" and theta > 0):
        if theta < 0:
            raise FormatError(f"{cfg_path}: jump_relu_threshold is {theta}; expected a value >= 0.")
        act, threshold = "jumprelu", torch.full((W_enc.shape[1],), theta)
    else:
        threshold = None
    tensors = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    shift = bool(cfg.get("use_decoder_bias", True) and cfg.get("apply_decoder_bias_to_pre_encoder", True))
    return act, tensors, threshold, shift, {}


def _llamascopium(cfg: dict[str, Any], state: dict[str, Tensor], where: Path, cfg_path: Path):
    """llamascopium 2: its dataset-wise forward, with s_in folded into the encoder and s_out into the decoder."""
    if cfg.get("sae_type") != "sae":
        raise FormatError(f"{cfg_path}: sae_type {cfg.get('sae_type')!r} is not supported; saelab reads "
                          "llamascopium sparse dictionaries of sae_type 'sae' (SAEs and transcoders).")
    require(state, ("W_E", "b_E", "W_D"), where)
    act = _check(cfg, cfg_path)
    prefix = "dataset_average_activation_norm."
    by_hook = {k[len(prefix):]: float(v) for k, v in state.items() if k.startswith(prefix)}
    hook_in, hook_out = cfg["hook_point_in"], cfg.get("hook_point_out") or cfg["hook_point_in"]
    s_in, s_out = _scales(cfg, {"in": by_hook.get(hook_in), "out": by_hook.get(hook_out)}, where)
    W_enc, b_enc = state["W_E"].float() * s_in, state["b_E"].float()
    W_dec = state["W_D"].float()
    b_dec = state["b_D"].float() if "b_D" in state else torch.zeros(W_dec.shape[1])
    norms = W_dec.norm(dim=-1) if cfg.get("sparsity_include_decoder_norm", True) else None  # [d_sae]
    threshold, extra = None, {}
    if act == "jumprelu":
        require(state, ("activation_function.log_jumprelu_threshold",), where)
        threshold = state["activation_function.log_jumprelu_threshold"].float().exp()
        if norms is not None:
            threshold = threshold / norms  # gate: pre * norm > theta
    elif act == "topk" and norms is not None:
        # top-k of pre * norm, then / norm: rank in unit-decoder units (latents come out scaled by the norm)
        W_enc, b_enc, W_dec = W_enc * norms, b_enc * norms, W_dec / norms[:, None]
        extra["folded_decoder_norm"] = True
    tensors = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec / s_out, "b_dec": b_dec / s_out}
    return act, tensors, threshold, False, extra


def _site(path: Path, hook_in: str, hook_out: str) -> tuple[str, str]:
    """Llama Scope site letter and model id from a folder such as `Llama3_1-8B-Base-L15R-8x`."""
    m = _SITE.search(path.name)
    if m:
        site = m.group(2)
    elif hook_in != hook_out:
        site = "TC"
    else:
        site = next((s for s, h in (("R", "resid_post"), ("A", "attn_out"), ("M", "mlp_out")) if h in hook_in), "")
    model = next((mid for prefix, mid in _MODELS.items() if path.name.startswith(prefix)), "")
    return site, model


def load(path: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> SparseCoder:
    """Read a Llama Scope dictionary directory (published lm-saes 1.0 layout or llamascopium 2)."""
    weights = _weights(path)
    if weights is None:
        raise FormatError(f"{path}: no {' or '.join(_WEIGHTS)}; a Llama Scope dictionary directory holds "
                          f"{' + '.join(FILES)} (or llamascopium's {' + '.join(LLAMASCOPIUM_FILES)}).")
    published = (path / "hyperparams.json").is_file()
    cfg_path = path / ("hyperparams.json" if published else "config.json")
    raw = read_json_file(cfg_path)
    state = read_safetensors(weights)
    stored_dtype = next(iter(state.values())).dtype
    act, tensors, threshold, shift, extra = (_published if published else _llamascopium)(raw, state, weights, cfg_path)
    d_in, d_sae = tensors["W_enc"].shape
    if d_in != int(raw["d_model"]):
        raise FormatError(f"{weights}: the encoder reads width {d_in} but {cfg_path.name} says d_model="
                          f"{raw['d_model']}; the files do not belong together.")
    if threshold is not None:
        tensors["threshold"] = threshold
    hook_in = raw["hook_point_in"]
    hook_out = raw.get("hook_point_out") or hook_in
    site, model = _site(path, hook_in, hook_out)
    lm_config = path / "lm_config.json"
    if lm_config.is_file():
        model = read_json_file(lm_config).get("model_name") or model
    transcoder = hook_out != hook_in
    cfg = CoderConfig(
        architecture=act, d_in=int(d_in), d_sae=int(d_sae), k=int(raw.get("top_k", 50)) if act == "topk" else None,
        kind="transcoder" if transcoder else "sae", hookpoint=hook_in,
        out_hookpoint=hook_out if transcoder else None, model=model, apply_b_dec_to_input=shift,
        source_format=NAME,
        extra={"site": site, "layout": "lm-saes 1.0" if published else "llamascopium", "original_cfg": raw,
               "folded_dataset_norm": raw.get("norm_activation", "dataset-wise") == "dataset-wise", **extra},
    )
    return SparseCoder.from_tensors(cfg, tensors, where=str(weights), device=device, dtype=dtype or stored_dtype)
