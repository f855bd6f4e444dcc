"""Does a dictionary fit a model? Its widths against the model's at its hookpoints.

A dictionary trained on another model (or another site) would otherwise fail deep inside
a long run, or worse, run. The widths are read with one 1-token forward that stops at the
deepest hookpoint, so the check is exact for any architecture and costs nothing next to
the run it guards.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..errors import ConfigError
from ..models.hookpoints import Hookpoint, resolve_hookpoint
from .capture import ActivationReader


def hookpoint_widths(model: nn.Module, hookpoints: list[str] | list[Hookpoint]) -> dict[str, int]:
    """Width (last dimension) of the activation at each hookpoint, by canonical name.

    Example:
        >>> hookpoint_widths(lm.model, ["resid_post.6", "mlp_in.6"])
        {'model.layers.6': 576, 'model.layers.6.mlp:input': 576}
    """
    reader = ActivationReader(model, hookpoints)
    device = next(model.parameters()).device
    acts = reader(torch.zeros(1, 1, dtype=torch.long, device=device))  # token 0: any id will do
    return {name: int(a.shape[-1]) for name, a in acts.items()}


def check_dictionary_fits(coder: Any, lm: Any, name: str | None = None) -> None:
    """Raise ConfigError unless `coder` reads (and, for a transcoder, writes) activations as wide as
    `lm`'s at its hookpoints.

    coder: anything with a `cfg` holding `hookpoint`, `d_in` and, for transcoders, `out_hookpoint`
        and `out_width` (a `SparseCoder`); a crosscoder is checked at `cfg.hookpoint` when it has one.
    lm: a `LoadedModel` (or the bare `nn.Module`).
    name: how to call the dictionary in the message (default: its hookpoint).

    Example:
        >>> check_dictionary_fits(load_dictionary("gemma-scope/layer_20/..."), load_model("smollm2"))
        ConfigError: dictionary 'resid_post.20' does not fit smollm2 at its hookpoint resid_post.20 (model.layers.20):
        its d_in is 2304, but the model gives activations of width 576 there ...
    """
    check_dictionaries_fit({name or coder.cfg.hookpoint: coder}, lm)


def check_dictionaries_fit(coders: Mapping[str, Any], lm: Any) -> None:
    """`check_dictionary_fits` for several dictionaries (by name), with one forward for all their hookpoints."""
    model = getattr(lm, "model", lm)
    checks = []  # (label, cfg, field, width wanted, resolved hookpoint, hookpoint as written)
    for label, coder in coders.items():
        cfg = coder.cfg
        if not cfg.hookpoint:
            continue  # nowhere to read: the caller's own hookpoint resolution reports it
        checks.append((label, cfg, "d_in", int(cfg.d_in), resolve_hookpoint(model, cfg.hookpoint), cfg.hookpoint))
        out = getattr(cfg, "out_hookpoint", None)
        if getattr(cfg, "kind", "sae") == "transcoder" and out:
            checks.append((label, cfg, "d_out", int(getattr(cfg, "out_width", cfg.d_in)),
                           resolve_hookpoint(model, out), out))
    if not checks:
        return
    widths = hookpoint_widths(model, list({c[4].name: c[4] for c in checks}.values()))
    for label, cfg, field, want, hp, written in checks:
        have = widths[hp.name]
        if have != want:
            where = written if written == hp.name else f"{written} ({hp.name})"
            model_name = getattr(lm, "spec", None) or type(model).__name__
            trained_on = getattr(cfg, "model", "") or ""
            hint = f"it was trained on {trained_on}" if trained_on else "it was trained on another model or site"
            raise ConfigError(
                f"dictionary {label!r} does not fit {model_name} at its hookpoint {where}: its {field} is {want}, "
                f"but the model gives activations of width {have} there ({field} {want} ≠ width {have}); {hint}: "
                "load the model it was made for, or a dictionary of this model."
            )
