"""The two models of a diff, loaded when first needed, in the dtype the user asked for: auto / float32 /
float16 / bfloat16 (or fp32 / fp16 / bf16), or int8 (`saelab.models.quantize`), all through `load_model`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..models.load import AUTO, QUANTIZATIONS, SHORT_NAMES, LoadedModel, dtype_name, load_model
from ..models.quantize import INT8, check_int8

log = logging.getLogger(__name__)

RECORDED = {**{v: k for k, v in SHORT_NAMES.items()}, AUTO: AUTO, INT8: INT8}
"""The name an artifact records for each dtype: the seed's `quantization` values, so that diffs made before
`--dtype` existed are recognised as the same settings and resume."""


def diff_dtype(dtype: str) -> str:
    """The one name of a diff's model dtype: auto | float32 | float16 | bfloat16 | int8 (fp32 / fp16 / bf16 too)."""
    return dtype_name(dtype, "--dtype", QUANTIZATIONS)


class ModelPair:
    """Base and target, as `LoadedModel`s given by the caller or loaded from specs on first use."""

    def __init__(self, base: Any, target: Any, *, device: str = "cpu", dtype: str = "auto",
                 quantization: str | None = None, cache_dir: str | Path | None = None) -> None:
        """`dtype`: `diff_dtype`'s names; `quantization`: the seed's name of it (used when given)."""
        dtype = quantization or dtype
        if diff_dtype(dtype) == INT8:
            check_int8(device)
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
                self._loaded[which] = load_model(str(self.specs[which]), self.dtype, self.device, self.cache_dir)
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
