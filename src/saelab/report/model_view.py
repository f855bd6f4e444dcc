"""What the report needs from the subject model: token strings and the unembedding W_U."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass
class ModelView:
    """Token text and (optionally) the unembedding of the model that made the workspace's windows.

    Example:
        >>> view = ModelView.from_loaded(load_model("smollm2-135m"))
        >>> view.text([42, 43]), view.unembedding.shape    # (['…', '…'], (49152, 576))
    """

    decode: Callable[[int], str]
    """one token id → its text (as the tokenizer decodes it alone)"""
    unembedding: torch.Tensor | None = None
    """float32 [vocab, d_model]: W_U; None when no model was loaded (no logit effects then)"""
    description: str = ""
    """what was loaded, for the index page"""
    _cache: dict[int, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_loaded(cls, lm: Any) -> "ModelView":
        """From a `LoadedModel`: its tokenizer and the weight of its output embedding."""
        w_u = lm.model.get_output_embeddings().weight.detach().float().cpu()
        return cls(_decoder(lm.tokenizer), w_u, str(lm.spec))

    @classmethod
    def ids_only(cls, description: str = "no model loaded") -> "ModelView":
        """Tokens shown as `#id`, no logit effects."""
        return cls(lambda i: f"#{i}", None, description)

    def text(self, ids: Iterable[int]) -> list[str]:
        out = []
        for i in ids:
            i = int(i)
            if i not in self._cache:
                self._cache[i] = self.decode(i)
            out.append(self._cache[i])
        return out

    def logit_effects(self, directions: torch.Tensor, n: int) -> list[dict[str, list]]:
        """Top and bottom `n` tokens of W_dec · W_U for each direction [m, d_model] (None-safe:
        an empty list without an unembedding or when d_model differs)."""
        if self.unembedding is None or directions.shape[-1] != self.unembedding.shape[1] or n == 0:
            return []
        effects = directions.float() @ self.unembedding.T  # [m, vocab]
        top, bottom = effects.topk(n, dim=1), effects.topk(n, dim=1, largest=False)
        return [{"top": self._pairs(top.indices[r], top.values[r]),
                 "bottom": self._pairs(bottom.indices[r], bottom.values[r])} for r in range(effects.shape[0])]

    def _pairs(self, ids: torch.Tensor, values: torch.Tensor) -> list[tuple[str, float]]:
        return list(zip(self.text(ids.tolist()), np.round(values.numpy(), 3).tolist()))


def _decoder(tokenizer: Any) -> Callable[[int], str]:
    if tokenizer is None:
        return lambda i: f"#{i}"
    return lambda i: tokenizer.decode([i])


def for_workspace(workspace: Any, spec: str | None = None) -> ModelView:
    """The view of the model that made the workspace's token windows (`spec` overrides it; `none`:
    the tokenizer alone, no logit effects). Loading the model takes seconds (~20 s from a GGUF)."""
    from .._io import read_json
    from ..errors import ArtifactError
    from ..models.load import load_model

    if not (workspace.tokens / "cfg.json").exists():
        raise ArtifactError(f"no token windows at {workspace.tokens} (cfg.json missing): is {workspace.root} a "
                            "workspace? Run `saelab demo` or `saelab tokens` first.")
    cfg = read_json(workspace.tokens / "cfg.json")
    spec = spec or cfg.get("model")
    if spec and spec.lower() != "none":
        return ModelView.from_loaded(load_model(spec, dtype="float32"))
    path = cfg.get("tokenizer")
    if not path:
        return ModelView.ids_only("no model, no tokenizer: tokens shown as ids")
    from transformers import AutoTokenizer

    return ModelView(_decoder(AutoTokenizer.from_pretrained(path)), None,
                     f"tokenizer {path} (no model: no logit effects)")
