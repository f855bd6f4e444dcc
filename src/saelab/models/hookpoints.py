"""Hookpoints: where in the model activations are read.

A hookpoint is a module path on the Hugging Face model (`model.layers.6`,
`model.layers.6.mlp`) plus which side of the module is read (its output, or its input
with the suffix `:input`). Users also write the names they know from other tools, which
resolve to the same module. Gemma 2 and Gemma 3 layers have a norm after attention and
after the MLP ("sandwich" norms); there, as in TransformerLens, `attn_out` and `mlp_out`
are what is added to the residual stream, after those norms:

| alias                                      | Llama: model.layers.6…            | Gemma 2 / 3: model.layers.6…       |
| ------------------------------------------ | --------------------------------- | ---------------------------------- |
| `resid_post.6`, `blocks.6.hook_resid_post` | (the layer)                       | (the layer)                        |
| `resid_pre.6`, `blocks.6.hook_resid_pre`   | (the layer)`:input`               | (the layer)`:input`                |
| `blocks.6.hook_resid_mid` (`.hook_mlp_in`) | `.post_attention_layernorm:input` | `.pre_feedforward_layernorm:input` |
| `attn_out.6`, `blocks.6.hook_attn_out`     | `.self_attn`                      | `.post_attention_layernorm`        |
| `mlp_in.6`                                 | `.mlp:input`                      | `.mlp:input`                       |
| `mlp_out.6`, `blocks.6.hook_mlp_out`       | `.mlp`                            | `.post_feedforward_layernorm`      |
| `layers.6.mlp`                             | `.mlp`                            | `.mlp` (before its norm)           |
| `blocks.6.ln1.hook_normalized`             | `.input_layernorm`                | `.input_layernorm`                 |
| `blocks.6.ln1_post.hook_normalized`        | —                                 | `.post_attention_layernorm`        |
| `blocks.6.ln2.hook_normalized`             | `.post_attention_layernorm`       | `.pre_feedforward_layernorm`       |
| `blocks.6.ln2_post.hook_normalized`        | —                                 | `.post_feedforward_layernorm`      |
| `ln_final.hook_normalized`                 | `model.norm`                      | `model.norm`                       |

Also `layers.6` (sparsify) and `L6R` / `L6A` / `L6M` (Llama Scope) for resid_post / attn_out /
mlp_out; Llama Scope's transcoder `L6TC` reads `blocks.6.ln2.hook_normalized` and writes
`blocks.6.hook_mlp_out`. `mlp_in.6` and `blocks.6.ln2.hook_normalized` are the same tensor
(the MLP reads the norm's output). TransformerLens's `hook_mlp_in` is resid_mid, the norm's input.

One difference from TransformerLens: its `ln*.hook_normalized` is x / rms(x), before the
norm's learned scale, while saelab reads the norm module's output, scale included (the
tensor the next module actually receives).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from torch import nn

from ..errors import HookpointError

Side = Literal["output", "input"]

# alias pattern -> site; a site is resolved per model by `_site` to (submodule below the layer, side)
_LAYER_ALIASES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(?:resid_post\.|blocks\.)(\d+)(?:\.hook_resid_post)?$"), "resid_post"),
    (re.compile(r"^(?:resid_pre\.(\d+)|blocks\.(\d+)\.hook_resid_pre)$"), "resid_pre"),
    (re.compile(r"^blocks\.(\d+)\.hook_(?:resid_mid|mlp_in)$"), "resid_mid"),
    (re.compile(r"^(?:mlp_out\.(\d+)|blocks\.(\d+)\.hook_mlp_out)$"), "mlp_out"),
    (re.compile(r"^mlp_in\.(\d+)$"), "mlp_in"),
    (re.compile(r"^(?:attn_out\.(\d+)|blocks\.(\d+)\.hook_attn_out)$"), "attn_out"),
    (re.compile(r"^blocks\.(\d+)\.ln1\.hook_normalized$"), "ln1"),
    (re.compile(r"^blocks\.(\d+)\.ln1_post\.hook_normalized$"), "ln1_post"),
    (re.compile(r"^blocks\.(\d+)\.ln2\.hook_normalized$"), "ln2"),
    (re.compile(r"^blocks\.(\d+)\.ln2_post\.hook_normalized$"), "ln2_post"),
    # Llama Scope (Llama-3.1-8B): L15R, L15A, L15M; SAELens writes them in lower case (l15r)
    (re.compile(r"^[Ll](\d+)[Rr]$"), "resid_post"),
    (re.compile(r"^[Ll](\d+)[Aa]$"), "attn_out"),
    (re.compile(r"^[Ll](\d+)[Mm]$"), "mlp_out"),
]
# `blocks.6` alone is ambiguous in TransformerLens; only `blocks.N.hook_resid_post` is accepted
_BLOCKS_BARE = re.compile(r"^blocks\.\d+$")
# sites that have a short alias (`mlp_out.6`), in the order `Hookpoint.alias` prefers them
_SHORT_SITES = ("resid_post", "resid_pre", "mlp_out", "mlp_in", "attn_out")


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
    site: str | None = None
    """The short site name on this model (`resid_post`, `mlp_out`, …) when the hookpoint is one, else None."""

    @property
    def alias(self) -> str:
        """The short alias for the common cases (`resid_post.6`), else the canonical name."""
        return f"{self.site}.{self.layer}" if self.site and self.layer is not None else self.name


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


def _has_sandwich_norms(layer: nn.Module) -> bool:
    """Gemma 2/3: norms after attention and after the MLP, before the residual add."""
    return hasattr(layer, "post_feedforward_layernorm") and hasattr(layer, "post_attention_layernorm")


def _ln2_name(layer: nn.Module) -> str:
    # The norm whose output feeds the MLP: Gemma 2/3 have a dedicated pre-feedforward norm
    # (their `post_attention_layernorm` normalises the attention output instead).
    for name in ("pre_feedforward_layernorm", "post_attention_layernorm", "ln_2"):
        if hasattr(layer, name):
            return name
    raise HookpointError("this model's layers have no norm before the MLP (ln2)")


def _site(layer: nn.Module, site: str) -> tuple[str, Side]:
    """(submodule below the decoder layer, side) of a site on this model's layers."""
    sandwich = _has_sandwich_norms(layer)
    if site in ("ln1_post", "ln2_post") and not sandwich:
        raise HookpointError(f"{site}: this model's layers have no norm after the "
                             f"{'attention' if site == 'ln1_post' else 'MLP'} (only Gemma 2/3-style layers do).")
    table: dict[str, tuple[str, Side]] = {
        "resid_post": ("", "output"),
        "resid_pre": ("", "input"),
        "mlp_in": ("mlp", "input"),
        "mlp_out": ("post_feedforward_layernorm" if sandwich else "mlp", "output"),
        "attn_out": ("post_attention_layernorm" if sandwich else "self_attn", "output"),
        "ln1": ("input_layernorm", "output"),
        "ln1_post": ("post_attention_layernorm", "output"),
        "ln2_post": ("post_feedforward_layernorm", "output"),
    }
    if site in ("ln2", "resid_mid"):
        return _ln2_name(layer), "output" if site == "ln2" else "input"
    return table[site]


def _short_site(layer: nn.Module, sub: str, side: Side) -> str | None:
    """The short site name (`mlp_out`) that resolves to (sub, side) on this layer, if any."""
    for site in _SHORT_SITES:
        try:
            if _site(layer, site) == (sub, side):
                return site
        except HookpointError:
            continue
    return None


def _split_side(name: str) -> tuple[str, Side]:
    raw, side = name.strip(), "output"
    for suffix, s in ((":input", "input"), (":output", "output")):
        if raw.endswith(suffix):
            raw, side = raw[: -len(suffix)], s
    return raw, side  # type: ignore[return-value]


def _alias_module(raw: str, modules: dict[str, nn.Module], layers_path: str, name: str) -> tuple[str, Side] | None:
    """(module path, side) of a layer alias such as `mlp_out.6`, or None when `raw` is no alias."""
    if _BLOCKS_BARE.match(raw):
        return None
    n_layers = len(modules[layers_path])
    for pattern, site in _LAYER_ALIASES:
        m = pattern.match(raw)
        if not m:
            continue
        idx = int(next(g for g in m.groups() if g is not None))
        if not 0 <= idx < n_layers:
            raise HookpointError(
                f"hookpoint {name!r}: layer {idx} does not exist; the model has layers 0–{n_layers - 1}."
            )
        layer_path = f"{layers_path}.{idx}"
        try:
            sub, side = _site(modules[layer_path], site)
        except HookpointError as e:
            raise HookpointError(f"hookpoint {name!r}: {e}") from None
        return (f"{layer_path}.{sub}" if sub else layer_path), side
    return None


def resolve_hookpoint(model: nn.Module, name: str) -> Hookpoint:
    """Resolve a hookpoint name or alias on `model`; raise HookpointError listing valid names.

    Example:
        >>> resolve_hookpoint(gemma2, "blocks.3.hook_mlp_out").module
        'model.layers.3.post_feedforward_layernorm'
    """
    modules = dict(model.named_modules())
    layers_path = decoder_layers_path(model)
    raw, side = _split_side(name)
    base = layers_path.rsplit(".", 1)[0]

    module_path: str | None = None
    if raw in modules and raw:
        module_path = raw
    elif f"{base}.{raw}" in modules and "." in layers_path:
        module_path = f"{base}.{raw}"  # sparsify's `layers.6`
    elif raw in ("ln_final.hook_normalized", "ln_final"):
        module_path = next((c for c in (f"{base}.norm", f"{base}.final_layernorm", "transformer.ln_f")
                            if c in modules), None)
    elif (found := _alias_module(raw, modules, layers_path, name)) is not None:
        module_path, side = found

    if module_path is None or module_path not in modules:
        raise HookpointError(
            f"hookpoint {name!r} is not on this model. Valid: "
            + ", ".join(list_hookpoints(model))
            + "; or any module path from model.named_modules(), optionally with ':input'."
        )
    layer = _layer_index(module_path, layers_path)
    site = None
    if layer is not None:
        layer_path = f"{layers_path}.{layer}"
        site = _short_site(modules[layer_path], module_path[len(layer_path):].lstrip("."), side)
    canonical = module_path + (":input" if side == "input" else "")
    return Hookpoint(name=canonical, module=module_path, side=side, layer=layer, site=site)


def _layer_index(module_path: str, layers_path: str) -> int | None:
    if not module_path.startswith(layers_path + "."):
        return None
    return int(module_path[len(layers_path) + 1 :].split(".", 1)[0])


def list_hookpoints(model: nn.Module) -> list[str]:
    """The aliases saelab accepts on `model`, as ranges (`resid_post.0-29`)."""
    layers_path = decoder_layers_path(model)
    layers = dict(model.named_modules())[layers_path]
    rng = f"0-{len(layers) - 1}"
    names = [f"resid_post.{rng}", f"resid_pre.{rng}", f"mlp_out.{rng}", f"mlp_in.{rng}",
             f"attn_out.{rng}", f"blocks.{rng}.hook_resid_post", f"blocks.{rng}.hook_resid_mid",
             f"blocks.{rng}.hook_mlp_out", f"blocks.{rng}.hook_attn_out", f"blocks.{rng}.ln1.hook_normalized",
             f"blocks.{rng}.ln2.hook_normalized"]
    if _has_sandwich_norms(layers[0]):
        names += [f"blocks.{rng}.ln1_post.hook_normalized", f"blocks.{rng}.ln2_post.hook_normalized"]
    n = len(layers) - 1
    names += [f"L0R-L{n}R", f"L0A-L{n}A", f"L0M-L{n}M", f"{layers_path}.{rng}", f"{layers_path}.{rng}.mlp",
              "ln_final.hook_normalized"]
    return names


def residual_layer(hookpoint: str) -> int | None:
    """The decoder layer whose residual output a hookpoint name reads, from the name alone (no model):
    the layer of a known alias (`_LAYER_ALIASES`), except that the input of layer L + 1 (`resid_pre.{L+1}`,
    `blocks.{L+1}.hook_resid_pre`, `model.layers.{L+1}:input`) is layer L's output; else the name's last
    number; None for a name without a number.

    Example:
        >>> residual_layer("blocks.6.hook_resid_post"), residual_layer("resid_pre.7"), residual_layer("embed")
        (6, 6, None)
    """
    for pattern, site in _LAYER_ALIASES:
        m = pattern.match(hookpoint)
        if m:
            layer = int(next(g for g in m.groups() if g is not None))
            return layer - 1 if site == "resid_pre" else layer
    m = re.match(r"^(?:.*\.)?layers\.(\d+):input$", hookpoint)
    if m:
        return int(m.group(1)) - 1
    m = re.search(r"(\d+)(?!.*\d)", hookpoint)
    return int(m.group(1)) if m else None


def residual_names(canonical: str, layer: int) -> set[str]:
    """The names tools give the residual stream after decoder layer `layer` (`canonical`: saelab's
    module path, e.g. `model.layers.6`): saelab's aliases, TransformerLens's, sparsify's, and the
    next layer's input."""
    stack = canonical.rsplit(".", 1)[0]
    return {canonical, f"resid_post.{layer}", f"blocks.{layer}.hook_resid_post", f"layers.{layer}",
            f"resid_pre.{layer + 1}", f"blocks.{layer + 1}.hook_resid_pre", f"{stack}.{layer + 1}:input"}
