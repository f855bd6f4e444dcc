"""Where training activations come from: chunks of windows, shuffled, cut into steps.

The windows of a run are read in chunks of `shuffle_windows` windows. The text positions
of a chunk (excluded positions dropped) are permuted with a generator seeded by
(seed, chunk index) and cut into `shuffle_windows / batch_size` steps. The batches are
therefore a pure function of (seed, chunk, step): a run resumes at a step by re-reading
its chunk, with no shuffle buffer to save.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ..activations.stream import StreamConfig, stream_activations
from ..data.tokens import TokenWindows
from ..models.load import LoadedModel

# (lo, hi) window range -> ({hookpoint: [hi - lo, ctx, d]}, text mask bool [hi - lo, ctx])
ReadWindows = Callable[[int, int], tuple[dict[str, Tensor], Tensor]]


class ChunkedSource:
    """Training batches over windows [first, stop), chunk by chunk.

    Example:
        >>> src = ChunkedSource(read, first=0, stop=800, batch_size=8, chunk_windows=64, seed=0)
        >>> for step_batch in src.batches(chunk=0):     # {hookpoint: [n_text_tokens / 8, d]}
        ...     ...
    """

    def __init__(self, read: ReadWindows, first: int, stop: int, batch_size: int, chunk_windows: int, seed: int):
        assert stop > first and chunk_windows % batch_size == 0
        self.read, self.first, self.stop = read, first, stop
        self.batch_size, self.chunk_windows, self.seed = batch_size, chunk_windows, seed

    @property
    def n_chunks(self) -> int:
        return math.ceil((self.stop - self.first) / self.chunk_windows)

    def window_range(self, chunk: int) -> tuple[int, int]:
        lo = self.first + chunk * self.chunk_windows
        return lo, min(lo + self.chunk_windows, self.stop)

    def steps_in_chunk(self, chunk: int) -> int:
        lo, hi = self.window_range(chunk)
        return math.ceil((hi - lo) / self.batch_size)

    @property
    def total_steps(self) -> int:
        return sum(self.steps_in_chunk(c) for c in range(self.n_chunks))

    def batches(self, chunk: int) -> list[dict[str, Tensor]]:
        """The steps of one chunk: a list of {hookpoint: [n_i, d] float32} (same rows across hookpoints)."""
        lo, hi = self.window_range(chunk)
        acts, mask = self.read(lo, hi)
        flat = {hp: a[mask].to(torch.float32) for hp, a in acts.items()}  # [n_text, d]
        n = int(mask.sum())
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + chunk)
        order = torch.randperm(n, generator=gen)  # [n_text]
        parts = order.tensor_split(self.steps_in_chunk(chunk))
        return [{hp: a[idx.to(a.device)] for hp, a in flat.items()} for idx in parts]


def model_reader(lm: LoadedModel, windows: TokenWindows, hookpoints: list[str], batch_size: int) -> ReadWindows:
    """Read windows [lo, hi) through the model: one forward per `batch_size` windows serves
    every hookpoint, and stops after the deepest one."""

    def read(lo: int, hi: int) -> tuple[dict[str, Tensor], Tensor]:
        parts: dict[str, list[Tensor]] = {}
        masks = []
        stream = stream_activations(lm, windows, hookpoints, StreamConfig(batch_size=batch_size, start=lo, stop=hi),
                                    progress=False)
        for batch in stream:
            for hp, a in batch.acts.items():
                parts.setdefault(hp, []).append(a)
            masks.append(batch.mask)
        return {hp: torch.cat(p) for hp, p in parts.items()}, torch.cat(masks).to(next(iter(parts.values()))[0].device)

    return read


def tensor_reader(acts: dict[str, Tensor], mask: Tensor) -> ReadWindows:
    """Read windows from activations already in memory: {hookpoint: [n_windows, ctx, d]}, mask [n_windows, ctx]."""

    def read(lo: int, hi: int) -> tuple[dict[str, Tensor], Tensor]:
        return {hp: a[lo:hi] for hp, a in acts.items()}, mask[lo:hi]

    return read
