"""The two models of a diff, loaded when first needed, in the dtype the user asked for.

- auto / float32 / float16 / bfloat16 (or fp32 / fp16 / bf16): the dtype the weights are loaded
  in (`saelab.models.load.dtype_name` is the one parser of these names).
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
from ..models.load import AUTO, QUANTIZATIONS, SHORT_NAMES, LoadedModel, dtype_name

log = logging.getLogger(__name__)

INT8 = "int8"
RECORDED = {**{v: k for k, v in SHORT_NAMES.items()}, AUTO: AUTO, INT8: INT8}
"""The name an artifact records for each dtype: the seed's `quantization` values, so that diffs made before
`--dtype` existed are recognised as the same settings and resume."""


def diff_dtype(dtype: str) -> str:
    """The one name of a diff's model dtype: auto | float32 | float16 | bfloat16 | int8 (fp32 / fp16 / bf16 too)."""
    return dtype_name(dtype, "--dtype", QUANTIZATIONS)


def check_quantization(quantization: str, device: str) -> None:
    """Refuse a dtype (`diff_dtype`'s names) this platform cannot run, before any model is loaded."""
    if diff_dtype(quantization) != INT8:
        return
    if str(device).startswith("cuda"):
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise MissingPackageError("--dtype int8 on CUDA needs bitsandbytes (`pip install bitsandbytes`); "
                                      "or use --dtype bfloat16.")
        return
    engines = set(torch.backends.quantized.supported_engines) - {"none"}
    if str(device) != "cpu" or not engines:
        raise ConfigError(f"--dtype int8: not supported on device {device!r} by this torch build "
                          f"(quantized engines: {sorted(engines) or 'none'}); use --dtype bfloat16 or float32.")


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


def _load(spec: str, device: str, dtype: str, cache_dir: str | Path | None) -> LoadedModel:
    from ..models.load import load_model

    load_dtype = "float32" if dtype == INT8 else dtype  # int8 quantizes float32 weights after loading
    local = Path(spec).expanduser()
    if cache_dir is not None and not local.exists() and spec.count("/") == 1 and not spec.startswith((".", "/")):
        from huggingface_hub import snapshot_download

        spec_path = snapshot_download(spec, cache_dir=str(cache_dir),
                                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
        lm = load_model(spec_path, dtype=load_dtype, device=device)
        lm.spec = spec
    elif dtype == INT8 and str(device).startswith("cuda"):
        lm = _load_bnb(spec, device)
    else:
        lm = load_model(spec, dtype=load_dtype, device=device)
    if dtype == INT8 and not str(device).startswith("cuda"):
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

    def __init__(self, base: Any, target: Any, *, device: str = "cpu", dtype: str = "auto",
                 quantization: str | None = None, cache_dir: str | Path | None = None) -> None:
        """`dtype`: `diff_dtype`'s names; `quantization`: the seed's name of it (used when given)."""
        dtype = quantization or dtype
        check_quantization(dtype, device)
        self.specs = {"base": base, "target": target}
        self.device, self.cache_dir = device, cache_dir
        self.dtype = diff_dtype(dtype)  # auto | float32 | float16 | bfloat16 | int8
        self._loaded: dict[str, LoadedModel] = {k: v for k, v in self.specs.items() if isinstance(v, LoadedModel)}
        self._tokenizer: Any = None

    def identity(self, which: str) -> dict[str, Any]:
        """What identifies a model in an artifact's request (spec, dtype under the seed's key and names)."""
        spec = self.specs[which]
        name = spec.path if isinstance(spec, LoadedModel) else str(spec)
        return {"spec": name, "quantization": RECORDED[self.dtype]}

    def load(self) -> tuple[LoadedModel, LoadedModel]:
        for which in ("base", "target"):
            if which not in self._loaded:
                self._loaded[which] = _load(str(self.specs[which]), self.device, self.dtype, self.cache_dir)
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
