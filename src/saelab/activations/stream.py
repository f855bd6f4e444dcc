"""Stream activations over token windows in batches, in bounded memory."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import torch

from ..data.tokens import TokenWindows
from ..errors import ConfigError
from ..models.hookpoints import Hookpoint
from ..models.load import LoadedModel
from ..progress import token_progress
from .capture import ActivationReader

log = logging.getLogger(__name__)


class ActivationBatch(NamedTuple):
    """Activations of one batch of token windows."""

    windows: torch.Tensor
    """int64 [batch]: indices of the windows in the TokenWindows"""
    tokens: torch.Tensor
    """int32 [batch, ctx_len]"""
    mask: torch.Tensor
    """bool [batch, ctx_len]: True at text positions (see TokenizeConfig.exclude)"""
    acts: dict[str, torch.Tensor]
    """hookpoint name → [batch, ctx_len, d], in the model's dtype, on its device"""


@dataclass(frozen=True)
class StreamConfig:
    """How activations are streamed."""

    batch_size: int = 8
    """Windows per forward pass."""
    start: int = 0
    """First window (for resuming or for sharding by rank)."""
    stop: int | None = None
    """One past the last window (None: all)."""

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ConfigError(f"batch_size: got {self.batch_size}; expected a positive number of windows, e.g. 8.")


def stream_activations(lm: LoadedModel, windows: TokenWindows, hookpoints: list[str] | list[Hookpoint],
                       config: StreamConfig = StreamConfig(), progress: bool = True) -> Iterator[ActivationBatch]:
    """Yield activations at `hookpoints` for each batch of windows.

    One forward per batch serves every hookpoint, and it stops after the deepest one.
    Only one batch is alive at a time, so memory does not grow with the token count.

    Example:
        >>> for batch in stream_activations(lm, windows, ["resid_post.6"]):
        ...     x = batch.acts["model.layers.6"][batch.mask]     # [n_text_tokens, 576]
    """
    reader = ActivationReader(lm.model, hookpoints)
    stop = windows.n_windows if config.stop is None else min(config.stop, windows.n_windows)
    mask_all = windows.text_mask()
    n_tok = (stop - config.start) * windows.ctx_len
    with token_progress(n_tok, "activations", enabled=progress) as advance:
        for lo in range(config.start, stop, config.batch_size):
            hi = min(lo + config.batch_size, stop)
            tokens = windows.tokens[lo:hi]
            acts = reader(tokens.to(lm.device, torch.long))
            advance(tokens.numel())
            yield ActivationBatch(torch.arange(lo, hi), tokens, mask_all[lo:hi], acts)
