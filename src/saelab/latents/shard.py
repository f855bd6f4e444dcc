"""One shard of a latent store: the sparse activations of a fixed range of windows.

A shard holds, for windows [window_start, window_stop), every (window, position, latent)
where the latent fires at a text position, sorted by latent (then window, position), with
a CSR pointer over latents, so reading one latent is one slice:

| tensor                | dtype, shape          | meaning                                           |
| --------------------- | --------------------- | ------------------------------------------------- |
| `latent_ptr`          | int64 [d_sae+1]       | entries of latent j are `[ptr[j], ptr[j+1])`     |
| `window`              | int32 [nnz]           | window index (in the workspace's token windows)   |
| `position`            | int16/int32 [nnz]     | position in the window                            |
| `value`               | f16/bf16 [nnz]        | activation                                        |
| `window_ptr`          | int64 [d_sae+1]       | the same CSR over (latent, window) pairs:         |
| `window_max_window`   | int32 [nw]            | a window where the latent fires                   |
| `window_max_position` | int16/int32 [nw]      | the first position of its maximum there           |
| `window_max_value`    | f16/bf16 [nw]         | its maximum there                                 |
| `latent_max`          | f32 [d_sae]           | maximum of each latent over the shard (0: silent) |

Token ids are not stored: they live once in `workspace/tokens/`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from .._io import atomic_path
from ..errors import ConfigError


def position_dtype(ctx_len: int) -> torch.dtype:
    """The smallest signed integer dtype that holds every position of a window."""
    return torch.int16 if ctx_len <= torch.iinfo(torch.int16).max else torch.int32


def index_dtype(max_value: int) -> np.dtype:
    """The index (or count) dtype of a sparse structure whose indices, pointers or counts reach `max_value`:
    int32 up to 2³¹ − 1, int64 beyond. scipy's `_sparsetools` run in the dtype of the arrays they are given, and
    an int32 pointer past 2³¹ − 1 entries wraps around (wrong sums, or a segfault); every sparse build that can
    pass that size (co-occurrence pairs at 131,072 latents, a store's entries over 100M tokens) asks here."""
    return np.dtype(np.int32) if max_value <= np.iinfo(np.int32).max else np.dtype(np.int64)


def shard_name(index: int) -> str:
    return f"shards/shard-{index:05d}.safetensors"


@dataclass
class ShardRecord:
    """A finished shard, as listed in the manifest."""

    index: int
    file: str
    """Path relative to the store directory."""
    window_start: int
    window_stop: int
    n_text_tokens: int
    """Text positions covered (the excluded ones are not stored)."""
    n_entries: int
    n_window_entries: int
    bytes: int
    """File size: a listed shard of another size is refused."""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ShardBuilder:
    """Accumulates the non-zero latents of one shard's windows, then writes the shard."""

    def __init__(self, index: int, window_start: int, window_stop: int, d_sae: int, ctx_len: int,
                 value_dtype: torch.dtype) -> None:
        if window_stop > np.iinfo(np.int32).max:  # `window` is stored as int32
            raise ConfigError(f"window_stop: got {window_stop:,}; a latent store indexes at most 2³¹ − 1 windows: "
                              "use longer windows (ctx_len) or cache a part of the workspace (--n-windows).")
        self.index, self.window_start, self.window_stop = index, window_start, window_stop
        self.d_sae, self.ctx_len, self.value_dtype = d_sae, ctx_len, value_dtype
        self.pos_dtype = position_dtype(ctx_len)
        self.parts: list[tuple[torch.Tensor, ...]] = []
        self.n_text_tokens = 0

    def add(self, latents: torch.Tensor, coords: torch.Tensor) -> None:
        """latents: [n, d_sae] dense encoder output at n text positions;
        coords: int64 [n, 2] (window, position) of each of those positions."""
        values = latents.to(self.value_dtype)
        if not bool(torch.isfinite(values).all()):
            raise ConfigError(f"value_dtype: latent activations are not finite in {self.value_dtype} (float16 "
                              "overflows above 65504): use bfloat16, or a float32 model if the model overflows.")
        row, latent = (values > 0).nonzero(as_tuple=True)  # row-major: (window, position, latent) order
        self.parts.append((latent.to(torch.int32).cpu(), coords[row, 0].to(torch.int32).cpu(),
                           coords[row, 1].to(self.pos_dtype).cpu(), values[row, latent].cpu()))
        self.n_text_tokens += latents.shape[0]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The shard's tensors (see the module docstring)."""
        if self.parts:
            latent, window, position, value = (torch.cat(p) for p in zip(*self.parts))
        else:
            latent, window = torch.zeros(0, dtype=torch.int32), torch.zeros(0, dtype=torch.int32)
            position, value = torch.zeros(0, dtype=self.pos_dtype), torch.zeros(0, dtype=self.value_dtype)
        # entries arrive in (window, position) order: a stable sort by latent keeps it inside a latent
        latent, order = torch.sort(latent, stable=True)
        window, position, value = window[order], position[order], value[order]
        out = {"latent_ptr": _csr_ptr(latent, self.d_sae), "window": window, "position": position, "value": value}
        out.update(self._window_maxima(latent, window, position, value))
        return out

    def _window_maxima(self, latent: torch.Tensor, window: torch.Tensor, position: torch.Tensor,
                       value: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per (latent, window): the maximum and the first position where it is reached."""
        lat, win, val = latent.numpy().astype(np.int64), window.numpy().astype(np.int64), value.float().numpy()
        key = lat * (self.window_stop - self.window_start) + (win - self.window_start)  # sorted ascending
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else np.zeros(0, np.int64)
        seg_max = np.maximum.reduceat(val, starts) if key.size else np.zeros(0, np.float32)
        seg_id = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, key.size]))
        idx = np.where(val == seg_max[seg_id], np.arange(key.size), key.size)
        first = np.minimum.reduceat(idx, starts) if key.size else np.zeros(0, np.int64)
        first_t = torch.from_numpy(first)
        seg_latent = latent[first_t]
        latent_max = torch.zeros(self.d_sae, dtype=torch.float32)
        latent_max.scatter_reduce_(0, seg_latent.long(), value[first_t].float(), reduce="amax")
        return {"window_ptr": _csr_ptr(seg_latent, self.d_sae), "window_max_window": window[first_t],
                "window_max_position": position[first_t], "window_max_value": value[first_t],
                "latent_max": latent_max}

    def write(self, store_dir: Path) -> ShardRecord:
        """Write the shard atomically (temporary name, then rename) and return its record."""
        tensors = self.tensors()
        # one metadata key: safetensors writes a metadata map in hash order, which varies by process
        meta = {"shard": json.dumps({"window_start": self.window_start, "window_stop": self.window_stop,
                                     "n_text_tokens": self.n_text_tokens})}
        path = store_dir / shard_name(self.index)
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
        return ShardRecord(self.index, shard_name(self.index), self.window_start, self.window_stop,
                           self.n_text_tokens, int(tensors["value"].numel()),
                           int(tensors["window_max_value"].numel()), path.stat().st_size)


def _csr_ptr(sorted_latent: torch.Tensor, d_sae: int) -> torch.Tensor:
    """int64 [d_sae+1]: CSR pointer of entries sorted by latent."""
    counts = torch.bincount(sorted_latent.long(), minlength=d_sae)
    return torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
