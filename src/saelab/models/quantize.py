"""int8 weights: where a model can be loaded quantized, and how.

- CPU: torch's dynamic int8 quantization of every `nn.Linear` (weights int8, activations
  quantized per batch), where this torch build has a quantized engine for the platform.
- CUDA: bitsandbytes' LLM.int8().
Anywhere else the request is refused with the reason, before any model is loaded.
Activations are read in float32 either way.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import torch

from ..errors import ConfigError, MissingPackageError

log = logging.getLogger(__name__)

INT8 = "int8"


def check_int8(device: str | torch.device, arg: str = "--dtype") -> None:
    """Refuse int8 where this platform cannot run it (bitsandbytes missing on CUDA, no quantized engine)."""
    if str(device).startswith("cuda"):
        if importlib.util.find_spec("bitsandbytes") is None:
            raise MissingPackageError(f"{arg} int8 on CUDA needs bitsandbytes (`pip install bitsandbytes`); "
                                      f"or use {arg} bfloat16.")
        return
    engines = set(torch.backends.quantized.supported_engines) - {"none"}
    if str(device) != "cpu" or not engines:
        raise ConfigError(f"{arg} int8: not supported on device {str(device)!r} by this torch build "
                          f"(quantized engines: {sorted(engines) or 'none'}); use {arg} bfloat16 or float32.")


def quantize_dynamic_int8(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with every `nn.Linear` dynamically quantized to int8 (CPU), on the best engine available."""
    from torch.ao.quantization import quantize_dynamic

    engines = torch.backends.quantized.supported_engines
    for engine in ("x86", "fbgemm", "qnnpack", "onednn"):
        if engine in engines:
            torch.backends.quantized.engine = engine
            break
    log.info("quantizing to int8 (dynamic, engine %s)", torch.backends.quantized.engine)
    return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def load_int8_cuda(path: str, device: str) -> Any:
    """A causal LM from `path` with bitsandbytes' LLM.int8() weights on `device`."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=BitsAndBytesConfig(load_in_8bit=True),
                                                 device_map=device)
    return model.eval().requires_grad_(False)


__all__ = ["INT8", "check_int8", "load_int8_cuda", "quantize_dynamic_int8"]
