"""Where training activations come from: chunks of windows streamed through the model, or epochs over
an activation buffer; shuffled, cut into steps.

`ChunkedSource` (one pass): the windows of a run are read in chunks of `shuffle_windows` windows.
The text positions of a chunk (excluded positions dropped) are permuted with a generator seeded
by (seed, chunk index) and cut into `shuffle_windows / batch_size` steps.

`BufferSource` (several passes): every text position of the run's windows is in an activation
buffer; each epoch is a permutation of all of them seeded by (seed, epoch), cut into steps.

Either way the batches are a pure function of (seed, chunk, step): a run resumes at a step by
re-reading its chunk (or epoch), with no shuffle state to save.

Data parallel (`ranks` a `distributed.DataParallel`): each rank reads only its block of a chunk's windows
through the model and keeps, of each step, the rows that are its own; the ranks' rows together are exactly
the one-process step. From a buffer, each rank reads every world-th row of a step's sorted index.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
from torch import Tensor

from ..activations.buffer import ActivationBuffer
from ..activations.stream import StreamConfig, stream_activations
from ..data.tokens import TokenWindows
from ..distributed import LOCAL, Local, block
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

    def __init__(self, read: ReadWindows, first: int, stop: int, batch_size: int, chunk_windows: int, seed: int,
                 ctx_len: int = 1, ranks: Local = LOCAL):
        assert stop > first and chunk_windows % batch_size == 0
        self.read, self.first, self.stop = read, first, stop
        self.batch_size, self.chunk_windows, self.seed, self.ctx_len = batch_size, chunk_windows, seed, ctx_len
        self.ranks = ranks  # how a step's batch is split (its rows summed by `total_rows`)

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

    def chunk_tokens(self, chunk: int) -> int:
        """Window tokens (excluded positions included) the chunk's steps account for."""
        lo, hi = self.window_range(chunk)
        return (hi - lo) * self.ctx_len

    @property
    def total_tokens(self) -> int:
        return (self.stop - self.first) * self.ctx_len

    def steps(self, chunk: int, start: int = 0) -> Iterator[dict[str, Tensor]]:
        """The steps `start`… of one chunk: {hookpoint: [n_i, d] float32} (same rows across hookpoints)."""
        yield from self.batches(chunk)[start:]

    def batches(self, chunk: int) -> list[dict[str, Tensor]]:
        """The steps of one chunk: a list of {hookpoint: [n_i, d] float32} (same rows across hookpoints; this
        rank's rows of each step under data parallel)."""
        lo, hi = self.window_range(chunk)
        if self.ranks.world == 1:
            flat = self._text_rows(lo, hi)
            n, offset = next(iter(flat.values())).shape[0], 0
        else:  # this rank's block of the windows; its rows start after the lower ranks' rows
            a, b = block(hi - lo, self.ranks.rank, self.ranks.world)
            # a rank without windows in a short last chunk: one window read for the widths, no rows kept
            flat = self._text_rows(lo + a, lo + b) if b > a else \
                {hp: x[:0] for hp, x in self._text_rows(lo, lo + 1).items()}
            counts = self.ranks.gather_objects(next(iter(flat.values())).shape[0])
            n, offset = sum(counts), sum(counts[:self.ranks.rank])
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + chunk)
        order = torch.randperm(n, generator=gen)  # [n_text] over the whole chunk
        parts = order.tensor_split(self.steps_in_chunk(chunk))
        if self.ranks.world > 1:
            mine = len(next(iter(flat.values())))
            parts = tuple(idx[(idx >= offset) & (idx < offset + mine)] - offset for idx in parts)
        return [{hp: a[idx.to(a.device)] for hp, a in flat.items()} for idx in parts]

    def _text_rows(self, lo: int, hi: int) -> dict[str, Tensor]:
        """{hookpoint: [n_text, d] float32}: the text positions of windows [lo, hi), in order."""
        acts, mask = self.read(lo, hi)
        return {hp: a[mask.to(a.device)].to(torch.float32) for hp, a in acts.items()}


class BufferSource:
    """Training batches from an activation buffer: `total_steps` steps of `batch_rows` rows, epoch after epoch.

    Each epoch is a permutation of the buffer's rows (seeded by seed and epoch) cut into
    ceil(n_rows / batch_rows) steps; the last epoch may stop part way. A "chunk" of the run loop is
    an epoch. Window tokens are accounted per epoch (the buffer's windows × ctx_len), as sparsify counts.

    Example:
        >>> src = BufferSource(buffer, batch_rows=2048, seed=0, window_tokens=327_680, epochs=4)
        >>> for batch in src.steps(chunk=0):      # {hookpoint: [2048, d]}
        ...     ...
    """

    def __init__(self, buffer: ActivationBuffer, batch_rows: int, seed: int, window_tokens: int, epochs: float = 1.0,
                 steps: int | None = None, ranks: Local = LOCAL):
        self.buffer, self.batch_rows, self.seed, self.window_tokens = buffer, batch_rows, seed, window_tokens
        self.ranks = ranks
        self.steps_per_epoch = max(1, math.ceil(buffer.n_rows / batch_rows))
        self._total_steps = steps if steps is not None else max(1, round(epochs * self.steps_per_epoch))

    @property
    def total_steps(self) -> int:
        return self._total_steps

    @property
    def n_chunks(self) -> int:
        return math.ceil(self._total_steps / self.steps_per_epoch)

    def steps_in_chunk(self, chunk: int) -> int:
        return min(self.steps_per_epoch, self._total_steps - chunk * self.steps_per_epoch)

    def chunk_tokens(self, chunk: int) -> int:
        return self.window_tokens * self.steps_in_chunk(chunk) // self.steps_per_epoch

    @property
    def total_tokens(self) -> int:
        return sum(self.chunk_tokens(c) for c in range(self.n_chunks))

    def steps(self, chunk: int, start: int = 0) -> Iterator[dict[str, Tensor]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + chunk)
        parts = torch.randperm(self.buffer.n_rows, generator=gen).tensor_split(self.steps_per_epoch)
        for i in range(start, self.steps_in_chunk(chunk)):
            index = parts[i].sort().values  # sorted reads from the memory map
            if self.ranks.world > 1:
                index = index[self.ranks.rank::self.ranks.world]  # this rank's rows of the step
            yield {hp: self.buffer.rows(hp, index) for hp in self.buffer.hookpoints}


def total_rows(ranks: Local, batch: dict[str, Tensor]) -> int:
    """Rows of a step over every rank (`batch` holds this rank's)."""
    rows = next(iter(batch.values()))
    if ranks.world == 1:
        return rows.shape[0]
    return int(ranks.sum(torch.tensor([rows.shape[0]], device=rows.device)))


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
