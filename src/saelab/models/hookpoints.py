"""Hookpoints: where in the model activations are read.

A hookpoint is a module path on the Hugging Face model (`model.layers.6`,
`model.layers.6.mlp`) plus which side of the module is read (its output, or its input
with the suffix `:input`). Users also write the names they know from other tools, which
resolve to the same module:

| alias                                   | module (Llama / Gemma 3)                    | side   |
| --------------------------------------- | ------------------------------------------- | ------ |
| `resid_post.6`, `blocks.6.hook_resid_post`, `layers.6` | `model.layers.6`             | output |
| `resid_pre.6`, `blocks.6.hook_resid_pre`  | `model.layers.6`                          | input  |
| `mlp_out.6`, `blocks.6.hook_mlp_out`, `layers.6.mlp` | `model.layers.6.mlp`           | output |
| `mlp_in.6`, `blocks.6.hook_mlp_in`        | `model.layers.6.mlp`                      | input  |
| `attn_out.6`, `blocks.6.hook_attn_out`    | `model.layers.6.self_attn`                | output |
| `blocks.6.ln1.hook_normalized`            | `model.layers.6.input_layernorm`          | output |
| `blocks.6.ln2.hook_normalized`            | the norm that feeds the MLP (`post_attention_layernorm` on Llama, `pre_feedforward_layernorm` on Gemma 3) | output |
| `ln_final.hook_normalized`                | `model.norm`                              | output |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from torch import nn

from ..errors import HookpointError

Side = Literal["output", "input"]

# alias pattern -> (submodule below the decoder layer, side); "{ln2}" is resolved per model
_LAYER_ALIASES: list[tuple[re.Pattern[str], str, Side]] = [
    (re.compile(r"^(?:resid_post\.|blocks\.)(\d+)(?:\.hook_resid_post)?$"), "", "output"),
    (re.compile(r"^(?:resid_pre\.(\d+)|blocks\.(\d+)\.hook_resid_pre)$"), "", "input"),
    (re.compile(r"^(?:mlp_out\.(\d+)|blocks\.(\d+)\.hook_mlp_out)$"), "mlp", "output"),
    (re.compile(r"^(?:mlp_in\.(\d+)|blocks\.(\d+)\.hook_mlp_in)$"), "mlp", "input"),
    (re.compile(r"^(?:attn_out\.(\d+)|blocks\.(\d+)\.hook_attn_out)$"), "self_attn", "output"),
    (re.compile(r"^blocks\.(\d+)\.ln1\.hook_normalized$"), "input_layernorm", "output"),
    (re.compile(r"^blocks\.(\d+)\.ln2\.hook_normalized$"), "{ln2}", "output"),
]
# `blocks.6` alone is ambiguous in TransformerLens; only `blocks.N.hook_resid_post` is accepted
_BLOCKS_BARE = re.compile(r"^blocks\.\d+$")


@dataclass(frozen=True)
class Hookpoint:
    """A resolved hookpoint."""

    name: str
    """Canonical name: the module path, with `:input` when the module's input is read."""
    module: str
    """Module path on the model, as in `model.named_modules()`."""
    side: Side
    """Read the module's `output` or its `input` (first positional argument)."""
    layer: int | None
    """Index of the decoder layer the module belongs to (None for embeddings/final norm)."""

    @property
    def alias(self) -> str:
        """The short alias for the common cases (`resid_post.6`), else the canonical name."""
        if self.layer is None:
            return self.name
        tail = self.module.rsplit(f".{self.layer}", 1)[-1].lstrip(".")
        short = {("", "output"): "resid_post", ("", "input"): "resid_pre",
                 ("mlp", "output"): "mlp_out", ("mlp", "input"): "mlp_in",
                 ("self_attn", "output"): "attn_out"}.get((tail, self.side))
        return f"{short}.{self.layer}" if short else self.name


def decoder_layers_path(model: nn.Module) -> str:
    """Module path of the decoder-layer list (`model.layers` for Llama/Gemma/Qwen)."""
    n_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    candidates = [
        name for name, mod in model.named_modules()
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and (n_layers is None or len(mod) == n_layers)
    ]
    if not candidates:
        raise HookpointError("could not find the model's list of decoder layers (an nn.ModuleList)")
    return min(candidates, key=len)  # the outermost list is the decoder stack


def _ln2_name(layer: nn.Module) -> str:
    # The norm whose output feeds the MLP: Gemma has a dedicated pre-feedforward norm.
    for name in ("pre_feedforward_layernorm", "post_attention_layernorm", "ln_2"):
        if hasattr(layer, name):
            return name
    raise HookpointError("this model's layers have no norm before the MLP (ln2)")


def resolve_hookpoint(model: nn.Module, name: str) -> Hookpoint:
    """Resolve a hookpoint name or alias on `model`; raise HookpointError listing valid names."""
    modules = dict(model.named_modules())
    layers_path = decoder_layers_path(model)
    n_layers = len(modules[layers_path])
    raw = name.strip()
    side: Side = "output"
    for suffix, s in ((":input", "input"), (":output", "output")):
        if raw.endswith(suffix):
            raw, side = raw[: -len(suffix)], s  # type: ignore[assignment]

    module_path: str | None = None
    if raw in modules and raw:
        module_path = raw
    elif f"{layers_path.rsplit('.', 1)[0]}.{raw}" in modules and "." in layers_path:
        module_path = f"{layers_path.rsplit('.', 1)[0]}.{raw}"  # sparsify's `layers.6`
    elif raw in ("ln_final.hook_normalized", "ln_final"):
        base = layers_path.rsplit(".", 1)[0]
        for cand in (f"{base}.norm", f"{base}.final_layernorm", "transformer.ln_f"):
            if cand in modules:
                module_path = cand
                break
    elif not _BLOCKS_BARE.match(raw):
        for pattern, sub, alias_side in _LAYER_ALIASES:
            m = pattern.match(raw)
            if not m:
                continue
            idx = int(next(g for g in m.groups() if g is not None))
            if not 0 <= idx < n_layers:
                raise HookpointError(
                    f"hookpoint {name!r}: layer {idx} does not exist; the model has layers 0–{n_layers - 1}."
                )
            layer_path = f"{layers_path}.{idx}"
            if sub == "{ln2}":
                sub = _ln2_name(modules[layer_path])
            module_path = f"{layer_path}.{sub}" if sub else layer_path
            side = alias_side
            break

    if module_path is None or module_path not in modules:
        raise HookpointError(
            f"hookpoint {name!r} is not on this model. Valid: "
            + ", ".join(list_hookpoints(model))
            + "; or any module path from model.named_modules(), optionally with ':input'."
        )
    layer = _layer_index(module_path, layers_path)
    canonical = module_path + (":input" if side == "input" else "")
    return Hookpoint(name=canonical, module=module_path, side=side, layer=layer)


def _layer_index(module_path: str, layers_path: str) -> int | None:
    if not module_path.startswith(layers_path + "."):
        return None
    return int(module_path[len(layers_path) + 1 :].split(".", 1)[0])


def list_hookpoints(model: nn.Module) -> list[str]:
    """The aliases saelab accepts on `model`, as ranges (`resid_post.0-29`)."""
    layers_path = decoder_layers_path(model)
    n = len(dict(model.named_modules())[layers_path])
    rng = f"0-{n - 1}"
    names = [f"resid_post.{rng}", f"resid_pre.{rng}", f"mlp_out.{rng}", f"mlp_in.{rng}",
             f"attn_out.{rng}", f"blocks.{rng}.hook_resid_post", f"blocks.{rng}.hook_mlp_out",
             f"blocks.{rng}.ln2.hook_normalized", f"{layers_path}.{rng}", f"{layers_path}.{rng}.mlp",
             "ln_final.hook_normalized"]
    return names
