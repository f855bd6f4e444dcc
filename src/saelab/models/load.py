"""`load_model(spec)`: a Hugging Face id or directory, a GGUF file, or an embedded name."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..errors import ConfigError, ModelError, choices_message
from .embedded import EMBEDDED_MODELS, ensure_converted, gguf_to_safetensors, cache_dir
from .hookpoints import decoder_layers_path

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
DType = Literal["float32", "bfloat16", "float16"]
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "fp32": torch.float32,
                                  "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                                  "float16": torch.float16, "fp16": torch.float16}


@dataclass
class LoadedModel:
    """A causal LM with its tokenizer and the facts saelab needs about it."""

    model: nn.Module
    """The `AutoModelForCausalLM` (in eval mode, gradients off)."""
    tokenizer: Any
    spec: str
    """What the user asked for (`smollm2-135m`, a hub id, a path)."""
    path: str
    """What was actually loaded (a directory or hub id): goes into cfg.json."""
    dtype: torch.dtype
    device: torch.device

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def n_layers(self) -> int:
        return len(self.model.get_submodule(decoder_layers_path(self.model)))

    @property
    def d_model(self) -> int:
        return int(self.config.hidden_size)

    @property
    def max_positions(self) -> int:
        return int(getattr(self.config, "max_position_embeddings", 1 << 30))

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "path": self.path, "architecture": self.config.model_type,
                "n_layers": self.n_layers, "d_model": self.d_model, "dtype": str(self.dtype).removeprefix("torch."),
                "device": str(self.device), "vocab_size": int(self.config.vocab_size)}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(choices_message("dtype", dtype, sorted(DTYPES)))
    return DTYPES[dtype]


def parse_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device: got {device!r}; expected 'cpu', 'cuda' or 'cuda:N'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: got {device!r} but CUDA is not available on this machine; use 'cpu'.")
    return dev


def resolve_model_path(spec: str) -> tuple[str, str | None]:
    """Map a spec to (directory or hub id, gguf file name or None)."""
    if spec in EMBEDDED_MODELS:
        return str(ensure_converted(EMBEDDED_MODELS[spec])), None
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"model: GGUF file {spec!r} does not exist.")
        out = cache_dir() / "models" / f"gguf-{path.stem}-{path.stat().st_size}"
        if not (out / "config.json").exists():
            gguf_to_safetensors(path.resolve(), out)
        return str(out), None
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError(
                f"model: directory {spec!r} has no config.json, so it is not a Hugging Face model directory."
            )
        return str(path), None
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return spec, None  # a hub id: transformers downloads it (users with internet)
    raise ModelError(
        choices_message("model", spec, list(EMBEDDED_MODELS),
                        "Or give a Hugging Face id (org/name), a model directory, or a .gguf file.")
    )


def load_model(spec: str = DEFAULT_MODEL, dtype: str | torch.dtype = "float32",
               device: str | torch.device = "cpu") -> LoadedModel:
    """Load a causal LM for reading activations.

    Args:
        spec: an embedded name (`smollm2-135m`, `gemma3-270m`), a Hugging Face id
            (`HuggingFaceTB/SmolLM2-135M-Instruct`), a local model directory, or a `.gguf` file.
        dtype: `float32`, `bfloat16` or `float16`.
        device: `cpu`, `cuda`, `cuda:N`.

    Example:
        >>> lm = load_model("smollm2-135m", dtype="bfloat16")
        >>> lm.n_layers, lm.d_model
        (30, 576)
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # saelab draws its own progress; a 1-s weight bar is noise
    torch_dtype, dev = parse_dtype(dtype), parse_device(device)
    path, _ = resolve_model_path(spec)
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except OSError as e:  # hub id not found / offline
        raise ModelError(f"model: could not load {spec!r}: {str(e).splitlines()[0]}") from None
    model.to(dev).eval().requires_grad_(False)
    log.info("loaded %s (%s) as %s on %s", spec, path, torch_dtype, dev)
    return LoadedModel(model=model, tokenizer=tok, spec=spec, path=path, dtype=torch_dtype, device=dev)
