"""The two models of a diff, loaded when first needed, with the quantization the user asked for.

- fp32 / fp16 / bf16: the dtype the weights are loaded in.
- int8: on a CPU, torch's dynamic int8 quantization of every `nn.Linear` (weights int8,
  activations quantized per batch), where torch has a quantized engine for the platform; on
  CUDA, bitsandbytes' LLM.int8(). Anywhere else the request is refused with the reason.
  Activations are read in float32 either way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, MissingPackageError
from ..models.load import LoadedModel

log = logging.getLogger(__name__)

QUANT_DTYPES = {"auto": "auto", "fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "float32"}
"""`auto`: bf16 where the device multiplies it fast, else fp32 (`saelab.models.load.auto_dtype`)."""


def check_quantization(quantization: str, device: str) -> None:
    """Refuse a quantization this platform cannot run, before any model is loaded."""
    if quantization not in QUANT_DTYPES:
        raise ConfigError(f"--quantization: got {quantization!r}; expected one of: auto, fp32, fp16, bf16, int8.")
    if quantization != "int8":
        return
    if str(device).startswith("cuda"):
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise MissingPackageError("--quantization int8 on CUDA needs bitsandbytes (`pip install bitsandbytes`); "
                                      "or use --quantization bf16.")
        return
    engines = set(torch.backends.quantized.supported_engines) - {"none"}
    if str(device) != "cpu" or not engines:
        raise ConfigError(f"--quantization int8: not supported on device {device!r} by this torch build "
                          f"(quantized engines: {sorted(engines) or 'none'}); use --quantization bf16 or fp32.")


def _quantize_cpu(lm: LoadedModel) -> LoadedModel:
    from torch.ao.quantization import quantize_dynamic

    engines = torch.backends.quantized.supported_engines
    for engine in ("x86", "fbgemm", "qnnpack", "onednn"):
        if engine in engines:
            torch.backends.quantized.engine = engine
            break
    lm.model = quantize_dynamic(lm.model, {torch.nn.Linear}, dtype=torch.qint8)
    log.info("quantized %s to int8 (dynamic, engine %s)", lm.spec, torch.backends.quantized.engine)
    return lm


def _load(spec: str, device: str, quantization: str, cache_dir: str | Path | None) -> LoadedModel:
    from ..models.load import load_model

    local = Path(spec).expanduser()
    if cache_dir is not None and not local.exists() and spec.count("/") == 1 and not spec.startswith((".", "/")):
        from huggingface_hub import snapshot_download

        spec_path = snapshot_download(spec, cache_dir=str(cache_dir),
                                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
        lm = load_model(spec_path, dtype=QUANT_DTYPES[quantization], device=device)
        lm.spec = spec
    elif quantization == "int8" and str(device).startswith("cuda"):
        lm = _load_bnb(spec, device)
    else:
        lm = load_model(spec, dtype=QUANT_DTYPES[quantization], device=device)
    if quantization == "int8" and not str(device).startswith("cuda"):
        lm = _quantize_cpu(lm)
    return lm


def _load_bnb(spec: str, device: str) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from ..models.load import resolve_model_path

    path, _ = resolve_model_path(spec)
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=BitsAndBytesConfig(load_in_8bit=True),
                                                 device_map=device)
    model.eval().requires_grad_(False)
    return LoadedModel(model, AutoTokenizer.from_pretrained(path), spec, path, torch.float16, torch.device(device))


class ModelPair:
    """Base and target, as `LoadedModel`s given by the caller or loaded from specs on first use."""

    def __init__(self, base: Any, target: Any, *, device: str = "cpu", quantization: str = "auto",
                 cache_dir: str | Path | None = None) -> None:
        check_quantization(quantization, device)
        self.specs = {"base": base, "target": target}
        self.device, self.quantization, self.cache_dir = device, quantization, cache_dir
        self._loaded: dict[str, LoadedModel] = {k: v for k, v in self.specs.items() if isinstance(v, LoadedModel)}
        self._tokenizer: Any = None

    def identity(self, which: str) -> dict[str, Any]:
        """What identifies a model in an artifact's request (spec, quantization)."""
        spec = self.specs[which]
        name = spec.path if isinstance(spec, LoadedModel) else str(spec)
        return {"spec": name, "quantization": self.quantization}

    def load(self) -> tuple[LoadedModel, LoadedModel]:
        for which in ("base", "target"):
            if which not in self._loaded:
                self._loaded[which] = _load(str(self.specs[which]), self.device, self.quantization, self.cache_dir)
        return self._loaded["base"], self._loaded["target"]

    def tokenizer(self) -> Any:
        """The base model's tokenizer (both share it); loaded alone when the models are not needed."""
        if "base" in self._loaded:
            return self._loaded["base"].tokenizer
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            from ..models.load import resolve_model_path

            self._tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(str(self.specs["base"]))[0])
        return self._tokenizer

    def hookpoint(self, layer: int) -> str | None:
        """Canonical hookpoint of `resid_post.layer` on the base model (None when it is not loaded)."""
        from ..models.hookpoints import resolve_hookpoint

        base = self._loaded.get("base")
        return resolve_hookpoint(base.model, f"resid_post.{layer}").name if base is not None else None

    def windows(self, config: Any, categories: dict[str, list[str]]) -> Any:
        """Corpus windows of `config` followed by one window per category prompt (`pair.paired_windows`)."""
        from ..data.corpus import load_corpus
        from ..data.tokens import TokenizeConfig, tokenize_corpus
        from .pair import paired_windows

        base, _ = self.load()
        corpus = tokenize_corpus(load_corpus(config.corpus), base.tokenizer,
                                 TokenizeConfig(ctx_len=config.ctx_len, n_tokens=config.n_tokens, seed=config.seed),
                                 max_positions=base.max_positions, model_name=base.spec)
        return paired_windows(corpus, base.tokenizer, categories)
