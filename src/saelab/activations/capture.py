"""Read activations at hookpoints, stopping the forward once the last one is captured.

The model runs with forward hooks on the requested modules. When every hookpoint of the
batch has been captured, the last hook raises `StopForward`: the layers after the
deepest hookpoint and the unembedding never run. Everything before that point is
computed exactly as in a full forward, so the activations are bit-identical to a full
forward with hooks (tested).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from ..models.hookpoints import Hookpoint, resolve_hookpoint


class StopForward(Exception):
    """Raised inside a hook to end the forward pass early (never escapes `capture`)."""


def first_tensor(x: Any) -> torch.Tensor:
    """A module's output as one tensor (decoder layers return a tuple whose first item is the hidden state)."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0]
    if hasattr(x, "last_hidden_state"):
        return x.last_hidden_state
    raise TypeError(f"cannot read a tensor from a module output of type {type(x).__name__}")


class ActivationReader:
    """Captures activations at fixed hookpoints of a model.

    Example:
        >>> reader = ActivationReader(lm.model, ["resid_post.6", "blocks.6.hook_mlp_out"])
        >>> acts = reader(input_ids)          # {canonical name: [batch, seq, d]}
    """

    def __init__(self, model: nn.Module, hookpoints: list[str] | list[Hookpoint], stop_early: bool = True):
        self.model = model
        resolved = [h if isinstance(h, Hookpoint) else resolve_hookpoint(model, h) for h in hookpoints]
        # two aliases of one module (or an SAE's input = output hookpoint) are read once
        self.hookpoints = list({h.name: h for h in resolved}.values())
        self.stop_early = stop_early

    @contextmanager
    def capturing(self, store: dict[str, torch.Tensor]) -> Iterator[None]:
        """Within the block, every forward of the model writes the hookpoints into `store`."""
        handles = []
        wanted = {h.name for h in self.hookpoints}

        def make(hp: Hookpoint):
            def save(t: torch.Tensor) -> None:
                store[hp.name] = t.detach()
                if self.stop_early and wanted <= store.keys():
                    raise StopForward

            if hp.side == "input":
                def pre_hook(_m: nn.Module, args: tuple, kwargs: dict) -> None:
                    save(args[0] if args else kwargs["hidden_states"])
                return pre_hook

            def hook(_m: nn.Module, _args: tuple, output: Any) -> None:
                save(first_tensor(output))
            return hook

        try:
            for hp in self.hookpoints:
                module = self.model.get_submodule(hp.module)
                if hp.side == "input":
                    handles.append(module.register_forward_pre_hook(make(hp), with_kwargs=True))
                else:
                    handles.append(module.register_forward_hook(make(hp)))
            yield
        finally:
            for h in handles:
                h.remove()

    @torch.inference_mode()
    def __call__(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """input_ids: [batch, seq] → {hookpoint name: [batch, seq, d]}"""
        store: dict[str, torch.Tensor] = {}
        with self.capturing(store):
            try:
                self.model(input_ids=input_ids, use_cache=False)
            except StopForward:
                pass
        missing = [h.name for h in self.hookpoints if h.name not in store]
        assert not missing, f"hookpoints never ran: {missing}"
        return store
