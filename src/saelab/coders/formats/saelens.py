"""SAELens: `cfg.json` + `sae_weights.safetensors`.

Tensors: `W_enc [d_in, d_sae]`, `b_enc`, `W_dec [d_sae, d_out]`, `b_dec`, `threshold [d_sae]`
(JumpReLU), `W_skip [d_out, d_in]` (skip transcoders). Configs come in two layouts:
- v6 (`metadata.sae_lens_version` >= 6): `architecture` one of standard, jumprelu, topk,
  transcoder, skip_transcoder, jumprelu_transcoder, jumprelu_skip_transcoder; hook name and
  model in `metadata`. BatchTopK / Matryoshka SAEs are saved for inference as jumprelu.
- older: `hook_name` / `hook_point`, `model_name` at the top level, `activation_fn`
  (`activation_fn_str`) with `activation_fn_kwargs.k` for TopK.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...errors import FormatError
from ..base import SparseCoder
from ..config import CoderConfig
from .common import read_json_file, read_safetensors, require

NAME = "saelens"
CFG, WEIGHTS = "cfg.json", "sae_weights.safetensors"
FILES = (CFG, WEIGHTS)

# SAELens architecture -> (saelab architecture, kind, skip)
_ARCHITECTURES = {
    "standard": ("relu", "sae", False),
    "jumprelu": ("jumprelu", "sae", False),
    "topk": ("topk", "sae", False),
    "transcoder": ("relu", "transcoder", False),
    "skip_transcoder": ("relu", "transcoder", True),
    "jumprelu_transcoder": ("jumprelu", "transcoder", False),
    "jumprelu_skip_transcoder": ("jumprelu", "transcoder", True),
}
_PLAIN_NORMALISATION = (None, False, "none", "expected_average_only_in")


def detect(path: Path) -> bool:
    return path.is_dir() and all((path / f).is_file() for f in FILES)


def _architecture(raw: dict[str, Any], where: Path) -> tuple[str, int | None]:
    """SAELens architecture name and k, from a v6 or an older config."""
    arch = raw.get("architecture", "standard")
    act = raw.get("activation_fn", raw.get("activation_fn_str", "relu"))
    k = raw.get("k")
    kwargs = raw.get("activation_fn_kwargs") or {}
    if act == "topk" and kwargs.get("k") is not None:  # pre-6.0 TopK
        arch, k = "topk", kwargs["k"]
    if arch not in _ARCHITECTURES:
        raise FormatError(f"{where}: architecture {arch!r} is not supported; saelab reads SAELens "
                          f"{', '.join(_ARCHITECTURES)} (BatchTopK/Matryoshka are saved for inference as jumprelu).")
    if act not in (None, "relu", "topk"):
        raise FormatError(f"{where}: activation_fn {act!r} is not supported; saelab reads relu and topk SAELens SAEs.")
    if arch == "topk" and k is None:
        raise FormatError(f"{where}: a topk SAE without k (looked in 'k' and 'activation_fn_kwargs.k').")
    return arch, (int(k) if arch == "topk" else None)


def _fold(tensors: dict[str, Tensor], raw: dict[str, Any], extra: dict) -> None:
    """Fold SAELens's inference-time rescalings into the weights (exact up to rounding)."""
    if "log_threshold" in tensors and "threshold" not in tensors:
        tensors["threshold"] = tensors.pop("log_threshold").exp()
    scale = tensors.pop("scaling_factor", tensors.pop("finetuning_scaling_factor", None))
    if scale is not None and not torch.all(scale == 1):
        tensors["W_dec"] = tensors["W_dec"] * scale.reshape(-1, 1)  # decode(f * s) = f @ (s * W_dec)
        extra["folded_scaling_factor"] = True
    if raw.get("rescale_acts_by_decoder_norm"):
        # pre is multiplied by ‖W_dec row‖ and activations divided by it before decoding
        norms = tensors["W_dec"].norm(dim=-1)  # [d_sae]
        tensors["W_enc"] = tensors["W_enc"] * norms
        tensors["b_enc"] = tensors["b_enc"] * norms
        tensors["W_dec"] = tensors["W_dec"] / norms.reshape(-1, 1)
        extra["folded_decoder_norm"] = True


def load(path: Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> SparseCoder:
    """Read a SAELens SAE or transcoder directory."""
    cfg_path, weights_path = path / CFG, path / WEIGHTS
    raw = read_json_file(cfg_path)
    require(raw, ("d_in", "d_sae"), cfg_path)
    meta = raw.get("metadata") or {}
    arch_name, k = _architecture(raw, cfg_path)
    architecture, kind, skip = _ARCHITECTURES[arch_name]
    norm = raw.get("normalize_activations")
    if norm not in _PLAIN_NORMALISATION:
        raise FormatError(f"{cfg_path}: normalize_activations={norm!r} is not supported; saelab reads SAELens SAEs "
                          "whose input is not normalised at run time ('none' or 'expected_average_only_in').")
    tensors = read_safetensors(weights_path)
    require(tensors, ("W_enc", "b_enc", "W_dec", "b_dec"), weights_path)
    extra: dict = {"original_cfg": raw}
    if norm == "expected_average_only_in":
        extra["note"] = "trained on activations scaled to norm sqrt(d_in); the scale is not in the weights"
    _fold(tensors, raw, extra)
    hook = meta.get("hook_name") or raw.get("hook_name") or raw.get("hook_point") or ""
    d_out = int(raw["d_out"]) if kind == "transcoder" and "d_out" in raw else None
    cfg = CoderConfig(
        architecture=architecture, d_in=int(raw["d_in"]), d_sae=int(raw["d_sae"]), k=k, kind=kind, d_out=d_out,
        hookpoint=hook,
        out_hookpoint=(meta.get("hook_name_out") or raw.get("hook_name_out") or "") if kind == "transcoder" else None,
        model=meta.get("model_name") or raw.get("model_name") or "",
        skip=skip,
        apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", kind != "transcoder")),
        source_format=NAME, extra=extra,
    )
    return SparseCoder.from_tensors(cfg, tensors, where=str(weights_path), device=device, dtype=dtype)
