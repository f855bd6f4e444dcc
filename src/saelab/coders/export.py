"""`export_saelens`: write a dictionary as a SAELens v6 `cfg.json` + `sae_weights.safetensors`.

BatchTopK and Matryoshka dictionaries are written as JumpReLU with their global threshold
repeated per latent, as SAELens itself saves them for inference.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_path, write_json
from ..errors import ConfigError
from .base import SparseCoder

SAELENS_VERSION = "6.54.12"  # the SAELens release whose loader this layout was checked against

# (saelab architecture, kind, skip) -> SAELens architecture
_SAELENS_ARCH = {
    ("relu", "sae", False): "standard",
    ("jumprelu", "sae", False): "jumprelu",
    ("batchtopk", "sae", False): "jumprelu",
    ("matryoshka", "sae", False): "jumprelu",
    ("topk", "sae", False): "topk",
    ("relu", "transcoder", False): "transcoder",
    ("relu", "transcoder", True): "skip_transcoder",
    ("jumprelu", "transcoder", False): "jumprelu_transcoder",
    ("jumprelu", "transcoder", True): "jumprelu_skip_transcoder",
    ("batchtopk", "transcoder", False): "jumprelu_transcoder",
    ("batchtopk", "transcoder", True): "jumprelu_skip_transcoder",
    ("matryoshka", "transcoder", False): "jumprelu_transcoder",
    ("matryoshka", "transcoder", True): "jumprelu_skip_transcoder",
}


def _saelens_cfg(coder: SparseCoder, arch: str) -> dict[str, Any]:
    c = coder.cfg
    metadata: dict[str, Any] = {"sae_lens_version": SAELENS_VERSION, "sae_lens_training_version": None,
                                "model_name": c.model or None, "hook_name": c.hookpoint or None,
                                "exported_by": "saelab", "saelab_architecture": c.architecture}
    if c.kind == "transcoder":
        metadata["hook_name_out"] = c.out_hookpoint
    cfg: dict[str, Any] = {
        "architecture": arch, "d_in": c.d_in, "d_sae": c.d_sae,
        "dtype": str(coder.dtype).removeprefix("torch."), "device": "cpu",
        "apply_b_dec_to_input": c.apply_b_dec_to_input, "normalize_activations": "none",
        "reshape_activations": "none", "metadata": metadata,
    }
    if arch == "topk":
        cfg.update(k=c.k, rescale_acts_by_decoder_norm=False)
    if c.kind == "transcoder":
        cfg["d_out"] = coder.d_out
    return cfg


def export_saelens(coder: SparseCoder, out_dir: str | os.PathLike) -> Path:
    """Write `coder` in SAELens v6 layout into `out_dir`; return the directory.

    SAELens loads it with `SAE.load_from_disk(out_dir)` and encodes identically.
    Crosscoders and TopK transcoders have no SAELens equivalent and raise ConfigError.
    """
    from safetensors.torch import save_file

    c = coder.cfg
    arch = _SAELENS_ARCH.get((c.architecture, c.kind, c.skip))
    if arch is None:
        raise ConfigError(f"export_saelens: got a {c.kind} {c.architecture} (skip={c.skip}); SAELens has no such "
                          f"class. Exportable: {', '.join(sorted({f'{k} {a}' for a, k, _ in _SAELENS_ARCH}))}.")
    if c.kind == "transcoder" and c.apply_b_dec_to_input:
        raise ConfigError("export_saelens: SAELens transcoders do not subtract b_dec from the input, "
                          "but this transcoder does (cfg.apply_b_dec_to_input=True).")
    tensors = {name: coder.state_dict()[name].detach().cpu().contiguous()
               for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    if c.architecture == "jumprelu":
        tensors["threshold"] = coder.threshold.detach().cpu().contiguous()
    elif c.architecture in ("batchtopk", "matryoshka"):
        # relu(pre) * (pre > t) with t >= 0 is SAELens's JumpReLU; a negative t means plain relu (t = 0)
        tensors["threshold"] = torch.full((c.d_sae,), max(float(coder.threshold), 0.0), dtype=coder.dtype)
    if coder.W_skip is not None:
        tensors["W_skip"] = coder.W_skip.detach().cpu().contiguous()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "sae_weights.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_json(out / "cfg.json", _saelens_cfg(coder, arch))
    return out
