"""Model-diffing crosscoders of science-of-finetuning/dictionary_learning (`CrossCoder`,
`BatchTopKCrossCoder` in `dictionary_learning/dictionary.py`; published on the Hub by
science-of-finetuning/… and Butanium/…).

Two layouts:
- Hub (`PyTorchModelHubMixin.save_pretrained`): `config.json` holds the class's init
  arguments (`activation_dim`, `dict_size`, `num_layers`, `k`, `code_normalization`, …; no
  class name, no layer) + `model.safetensors` (the state dict).
- trainSAE output: `model_final.pt` (a state dict, read with `weights_only=True`) +
  `config.json` = `{"trainer": {"dict_class": "BatchTopKCrossCoder", "layer": …, …}}`.

State dict, L = num_layers (2 for a base/target diff), F = dict_size, d = activation_dim:
`encoder.weight [L, d, F]`, `encoder.bias [F]`, `decoder.weight [L, F, d]`, `decoder.bias [L, d]`,
`code_normalization_id`; BatchTopK adds `k` and a scalar `threshold`; newer versions add
`activation_mean`, `activation_std [L, d]` (NaN: no normalisation) and `activation_global_scale [L]`.

The library encodes f = relu(Σ_l x̃_l W_enc[l] + b_enc) from x̃_l = (x_l − mean_l) · scale_l,
keeps f_j where f_j · c_j > threshold (c_j = code normalisation, CROSSCODER: Σ_l ‖d_j^l‖),
decodes x̃̂ = f W_dec + b_dec and maps it back to x̂ = x̃̂ / (scale_l + 1e-8) + mean_l.
saelab folds both into the weights, as `train.crosscoder._fold` does for its own coders:
`encode` returns f · c_j (the library's `get_activations`) on raw activations, `decode`
gives the library's x̂, and `cfg.extra["activation_scales"]` = 1 / scale_l, so Δnorm is
measured in the library's normalised units.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...errors import FormatError
from ..base import SparseCoder
from ..config import CoderConfig
from .common import read_json_file, read_safetensors, require
from .dictionary_learning import read_state_dict

log = logging.getLogger(__name__)

NAME = "dictionary_learning_crosscoder"
CONFIG, WEIGHTS, TRAINED = "config.json", "model.safetensors", "model_final.pt"
FILES = (CONFIG, WEIGHTS)  # the Hub layout; trainSAE writes model_final.pt instead

_CLASSES = ("CrossCoder", "BatchTopKCrossCoder")
_HUB_KEYS = ("activation_dim", "dict_size", "num_layers")
# CodeNormalization enum (auto() values) of dictionary.py
_CODE_NORMS = {1: "CROSSCODER", 2: "SAE", 3: "MIXED", 4: "NONE", 5: "DECOUPLED"}
_EPS = 1e-8  # NormalizableMixin.denormalize_activations divides by scale + 1e-8


def _weights_file(path: Path) -> Path | None:
    if path.is_file():
        return path if path.suffix in (".safetensors", ".pt") else None
    for name in (WEIGHTS, TRAINED):
        if (path / name).is_file():
            return path / name
    return None


def _is_crosscoder_config(raw: Any) -> bool:
    if not isinstance(raw, dict):
        return False
    trainer = raw.get("trainer")
    if isinstance(trainer, dict):
        return trainer.get("dict_class") in _CLASSES
    return all(k in raw for k in _HUB_KEYS)


def detect(path: Path) -> bool:
    """A `config.json` of a CrossCoder (its init arguments, or a trainer config naming the class) beside weights."""
    file = _weights_file(path)
    if file is None or not (file.parent / CONFIG).is_file():
        return False
    try:
        return _is_crosscoder_config(json.loads((file.parent / CONFIG).read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return False


def _state(file: Path) -> dict[str, Tensor]:
    state = read_safetensors(file) if file.suffix == ".safetensors" else read_state_dict(file)
    # a state dict saved under torch.compile prefixes every key (the library strips it too)
    return {k.split("_orig_mod.", 1)[-1]: v for k, v in state.items()}


def _code_normalization(state: dict[str, Tensor], cfg: dict[str, Any], where: Path) -> str:
    if "code_normalization_id" in state:
        value = int(state["code_normalization_id"])
        if value not in _CODE_NORMS:
            raise FormatError(f"{where}: code_normalization_id is {value}; expected one of {sorted(_CODE_NORMS)} "
                              f"({', '.join(_CODE_NORMS.values())}).")
        return _CODE_NORMS[value]
    name = str(cfg.get("code_normalization", "CROSSCODER")).upper()  # the library's default when absent
    if name not in _CODE_NORMS.values():
        raise FormatError(f"{where}: code_normalization is {name!r}; "
                          f"expected one of {', '.join(_CODE_NORMS.values())}.")
    return name


def code_norms(W_dec: Tensor, name: str, cfg: dict[str, Any]) -> Tensor:
    """c_j of the library's `get_code_normalization`. W_dec [F, L, d] -> [F]."""
    per_layer = W_dec.norm(dim=-1)  # [F, L]
    if name == "CROSSCODER":
        return per_layer.sum(-1)
    if name == "SAE":
        return per_layer.pow(2).sum(-1).sqrt()
    if name == "MIXED":
        a_sae, a_cc = cfg.get("code_normalization_alpha_sae", 1.0), cfg.get("code_normalization_alpha_cc", 0.1)
        return a_sae * per_layer.pow(2).sum(-1).sqrt() + a_cc * per_layer.sum(-1)
    return torch.ones(W_dec.shape[0], dtype=W_dec.dtype)  # NONE


def _normaliser(state: dict[str, Tensor], n_layers: int) -> tuple[Tensor, Tensor] | None:
    """(mean [L, d], scale [L]) of NormalizableMixin, or None when the coder reads activations as they are."""
    mean, std = state.get("activation_mean"), state.get("activation_std")
    if mean is None or std is None or torch.isnan(mean).any() or torch.isnan(std).any():
        return None
    scale = state.get("activation_global_scale")
    if scale is None:  # keep_relative_variance: total variance scaled to target_rms
        target = state.get("target_rms", torch.tensor(1.0)).float()
        scale = target / (std.float().pow(2).sum(-1) + 1e-8).sqrt()
    return mean.float(), scale.float().reshape(n_layers)


def _tensors(state: dict[str, Tensor], code_norm: str, cfg: dict[str, Any], norm: tuple[Tensor, Tensor] | None,
             where: Path) -> dict[str, Tensor]:
    """The library's tensors -> saelab's, with normalisation (`_normaliser`) and code normalisation folded in
    (float32)."""
    W_enc = state["encoder.weight"].float()  # [L, d, F]
    W_dec = state["decoder.weight"].float().permute(1, 0, 2)  # [L, F, d] -> [F, L, d]
    b_enc, b_dec = state["encoder.bias"].float(), state["decoder.bias"].float()  # [F], [L, d]
    if W_dec.shape[1] != W_enc.shape[0] or W_dec.shape[0] != W_enc.shape[2] or W_dec.shape[2] != W_enc.shape[1]:
        raise FormatError(f"{where}: encoder.weight {list(W_enc.shape)} and decoder.weight "
                          f"{list(state['decoder.weight'].shape)} do not match; expected [L, d, F] and [L, F, d] "
                          "(crosscoders whose encoder reads a subset of the decoded layers are not supported).")
    c = code_norms(W_dec, code_norm, cfg).clamp_min(1e-12)  # [F], from the library's own decoder
    if norm is not None:
        mean, scale = norm
        b_enc = b_enc - torch.einsum("ld,ldf->f", mean * scale[:, None], W_enc)  # encoder reads (x − mean) · scale
        W_enc = W_enc * scale[:, None, None]
        W_dec = W_dec / (scale[None, :, None] + _EPS)
        b_dec = b_dec / (scale[:, None] + _EPS) + mean
    # relu(pre · c) = c · relu(pre): encode gives the score the threshold compares, decode is unchanged
    return {"W_enc": W_enc * c, "b_enc": b_enc * c, "W_dec": W_dec / c[:, None, None], "b_dec": b_dec}


def load(path: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> SparseCoder:
    """Read a dictionary_learning CrossCoder / BatchTopKCrossCoder (Hub or trainSAE layout)."""
    file = _weights_file(path)
    if file is None:
        raise FormatError(f"{path}: no {WEIGHTS} or {TRAINED}; a dictionary_learning crosscoder needs one beside "
                          f"its {CONFIG}.")
    raw = read_json_file(file.parent / CONFIG)
    trainer = raw.get("trainer") if isinstance(raw.get("trainer"), dict) else None
    cfg = trainer or raw
    state = _state(file)
    require(state, ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"), file)
    if state["encoder.weight"].ndim != 3:
        raise FormatError(f"{file}: encoder.weight has shape {list(state['encoder.weight'].shape)}; expected "
                          "[num_layers, activation_dim, dict_size] (a crosscoder).")
    code_norm = _code_normalization(state, cfg, file)
    batchtopk = "k" in state or "threshold" in state
    if code_norm == "DECOUPLED" or (batchtopk and state.get("threshold", torch.zeros(())).numel() != 1):
        raise FormatError(f"{file}: a crosscoder with DECOUPLED code normalisation (one threshold and one code "
                          "per layer) is not supported; saelab reads CROSSCODER, SAE, MIXED and NONE.")
    n_layers, d_in, d_sae = state["encoder.weight"].shape
    norm = _normaliser(state, n_layers)
    tensors = _tensors(state, code_norm, cfg, norm, file)
    k = None
    if batchtopk:
        require(state, ("k", "threshold"), file)
        k = int(state["k"])
        tensors["threshold"] = state["threshold"].float().reshape(())
        if float(tensors["threshold"]) < 0:
            log.warning("%s: the BatchTopK threshold was never learned (%.3g); every positive latent fires",
                        file, float(tensors["threshold"]))
    extra: dict[str, Any] = {"dict_class": "BatchTopKCrossCoder" if batchtopk else "CrossCoder",
                             "code_normalization": code_norm, "original_cfg": raw, "folded_code_normalization": True}
    if norm is not None:
        extra["activation_scales"] = [float(1 / s) for s in norm[1]]
        extra["folded_activation_normalisation"] = True
    layer = (trainer or {}).get("layer")
    coder_cfg = CoderConfig(
        architecture="batchtopk" if batchtopk else "relu", d_in=int(d_in), d_sae=int(d_sae), k=k, kind="crosscoder",
        n_sources=int(n_layers), hookpoint=f"resid_post.{layer}" if isinstance(layer, int) else "",
        model=(trainer or {}).get("lm_name") or "", apply_b_dec_to_input=False, source_format=NAME, extra=extra,
    )
    return SparseCoder.from_tensors(coder_cfg, tensors, where=str(file), device=device,
                                    dtype=dtype or state["encoder.weight"].dtype)
