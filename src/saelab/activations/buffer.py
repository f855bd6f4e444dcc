"""An activation buffer: the model's activations for a run's training windows, produced once and read
for as many epochs as training wants.

Producing activations is the expensive part of training on a CPU (a SmolLM2 forward to layer 6
runs at ~1.3K tokens/s on 2 cores; a dictionary step over buffered activations at ~10K); once
they exist, a step over them is cheap. The buffer keeps the text positions of windows
[first, stop) (excluded positions dropped) in one memory-mapped `.npy` file per hookpoint, in
the model's dtype (bfloat16 stored as its 16 bits):

    workspace/buffers/NAME/cfg.json          what it holds (model, token windows, hookpoints), rows written
    workspace/buffers/NAME/HOOKPOINT.npy     [n_rows, d] (rows beyond n_rows are unused space)

It is written chunk by chunk; a killed write resumes after the last chunk recorded in cfg.json,
and a finished buffer with the same identity is reused by any later run. The OS page cache keeps
it in memory while it fits (327K tokens × 576 in float32: 0.75 GB); random batches of a larger one
are read from disk.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from .._io import read_json, write_cfg
from ..errors import ArtifactError, FileAccessError, file_error
from ..progress import token_progress

log = logging.getLogger(__name__)

ARTIFACT = "activation_buffer"

# (lo, hi) window range -> ({hookpoint: [hi - lo, ctx, d]}, text mask bool [hi - lo, ctx])
ReadWindows = Callable[[int, int], tuple[dict[str, Tensor], Tensor]]

_STORED = {torch.float32: (np.float32, "float32"), torch.bfloat16: (np.uint16, "bfloat16"),
           torch.float16: (np.float16, "float16")}


def buffer_name(identity: dict[str, Any]) -> str:
    """A buffer's directory name: a hash of what it holds, so equal requests share one buffer."""
    return "b-" + hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _file(path: Path, hookpoint: str) -> Path:
    return path / f"{hookpoint.replace('/', '_')}.npy"


class ActivationBuffer:
    """A finished buffer, read-only: `rows(hookpoint, index)` gives float32 rows.

    Example:
        >>> buf = ActivationBuffer(ws.root / "buffers" / name)
        >>> x = buf.rows("model.layers.6", torch.arange(2048))    # [2048, 576] float32
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.cfg = read_json(self.path / "cfg.json", "activation buffer")
        if self.cfg.get("artifact") != ARTIFACT or not self.cfg.get("complete"):
            raise ArtifactError(f"{self.path}: not a finished activation buffer (cfg.json says "
                                f"{self.cfg.get('artifact')!r}, complete={self.cfg.get('complete')}).")
        self.n_rows = int(self.cfg["n_rows"])
        self.dtype = self.cfg["dtype"]
        self._arrays = {hp: np.load(_file(self.path, hp), mmap_mode="r") for hp in self.cfg["hookpoints"]}

    @property
    def hookpoints(self) -> list[str]:
        return list(self.cfg["hookpoints"])

    def rows(self, hookpoint: str, index: Tensor | slice) -> Tensor:
        """float32 [n, d]: the rows `index` (sorted reads are faster from disk; a slice reads a range as is)."""
        index = index if isinstance(index, slice) else index.numpy()
        rows = self._arrays[hookpoint][index]  # a copy for an index array, a read-only view of the map for a slice
        out = torch.from_numpy(rows if rows.flags.writeable else rows.copy())
        if self.dtype == "bfloat16":
            out = out.view(torch.bfloat16)
        return out.to(torch.float32)


def buffer_stream(buffer: ActivationBuffer, windows: Any, start: int, stop: int, batch_size: int) -> Iterator[Any]:
    """`stream_activations`' batches for windows [start, stop), read from `buffer` instead of the model: its
    rows put back at the text positions of each window (zeros elsewhere; only text positions are read).
    The buffer must hold those windows: an ArtifactError says which it holds otherwise."""
    from .stream import ActivationBatch

    first, last = buffer.cfg["windows"]
    if not first <= start <= stop <= last:
        raise ArtifactError(f"{buffer.path}: holds windows [{first}, {last}), not [{start}, {stop}).")
    mask_all = windows.text_mask()
    counts = mask_all[first:last].sum(1)
    offsets = torch.cumsum(counts, 0) - counts  # row of each window's first text position
    if int(counts.sum()) != buffer.n_rows:
        raise ArtifactError(f"{buffer.path}: holds {buffer.n_rows:,} rows, but the windows' text positions number "
                            f"{int(counts.sum()):,}: it was made from other token windows.")
    for lo in range(start, stop, batch_size):
        hi = min(lo + batch_size, stop)
        mask = mask_all[lo:hi]
        a, b = int(offsets[lo - first]), int(offsets[hi - 1 - first] + counts[hi - 1 - first])
        acts = {}
        for hp in buffer.hookpoints:
            rows = buffer.rows(hp, slice(a, b))
            full = torch.zeros(*mask.shape, rows.shape[-1], dtype=rows.dtype)
            full[mask] = rows
            acts[hp] = full
        yield ActivationBatch(torch.arange(lo, hi), windows.tokens[lo:hi], mask, acts)


def write_buffer(path: str | Path, read: ReadWindows, first: int, stop: int, identity: dict[str, Any], *,
                 ctx_len: int, chunk_windows: int = 64, progress: bool = True) -> ActivationBuffer:
    """Fill `path` with the text-position activations of windows [first, stop) read by `read`; resume a
    partial buffer of the same identity; return the finished buffer (at once when it is already complete)."""
    path = Path(path)
    cfg_path = path / "cfg.json"
    state = read_json(cfg_path, "activation buffer") if cfg_path.exists() else None
    if state is not None and state.get("identity") != identity:
        log.warning("%s holds another buffer (%s); writing it anew", path, state.get("identity"))
        state = None
    if state is not None and state.get("complete"):
        return ActivationBuffer(path)
    done = int(state["windows_done"]) if state else 0
    n_rows = int(state["n_rows"]) if state else 0
    arrays: dict[str, np.memmap] = {}
    capacity = (stop - first) * ctx_len
    path.mkdir(parents=True, exist_ok=True)
    with token_progress((stop - first) * ctx_len, "buffer", progress, done=done * ctx_len) as advance:
        lo = first + done
        while lo < stop:
            hi = min(lo + chunk_windows, stop)
            acts, mask = read(lo, hi)
            if not arrays:
                if state is None:
                    state = _new_state(identity, acts, first, stop)
                arrays = _open(path, acts, capacity, fresh=done == 0)
            mask = mask.to(next(iter(acts.values())).device)
            m = int(mask.sum())
            for hp, a in acts.items():
                flat = a[mask].detach().cpu().contiguous()  # [m, d]
                if flat.dtype == torch.bfloat16:
                    flat = flat.view(torch.int16)
                arrays[hp][n_rows:n_rows + m] = flat.numpy().view(arrays[hp].dtype)
                arrays[hp].flush()
            n_rows += m
            done = hi - first
            state.update(n_rows=n_rows, windows_done=done, complete=hi >= stop)
            write_cfg(path, state)  # after the rows are on disk: a crash never records rows it lost
            advance((hi - lo) * ctx_len)
            lo = hi
    if not state or not state.get("complete"):  # an empty range
        raise ArtifactError(f"{path}: no windows to buffer in [{first}, {stop}).")
    return ActivationBuffer(path)


def _new_state(identity: dict[str, Any], acts: dict[str, Tensor], first: int, stop: int) -> dict[str, Any]:
    dtypes = {a.dtype for a in acts.values()}
    dtype = next(iter(dtypes))
    if len(dtypes) != 1 or dtype not in _STORED:
        raise ArtifactError(f"activation buffer: got activations of dtypes {sorted(map(str, dtypes))}; expected one "
                            f"of {sorted(n for _, n in _STORED.values())}.")
    return {"artifact": ARTIFACT, "identity": identity, "hookpoints": list(acts), "windows": [first, stop],
            "dtype": _STORED[dtype][1], "widths": {hp: int(a.shape[-1]) for hp, a in acts.items()},
            "n_rows": 0, "windows_done": 0, "complete": False}


def _open(path: Path, acts: dict[str, Tensor], capacity: int, fresh: bool) -> dict[str, np.memmap]:
    out = {}
    for hp, a in acts.items():
        file = _file(path, hp)
        if fresh or not file.exists():
            out[hp] = np.lib.format.open_memmap(file, mode="w+", dtype=_STORED[a.dtype][0],
                                                shape=(capacity, int(a.shape[-1])))
            _reserve(file)
        else:
            out[hp] = np.load(file, mmap_mode="r+")
    return out


def _reserve(file: Path) -> None:
    """Allocate the whole (sparse) memory-mapped file now: on a disk without room for it, a clear error here
    instead of a SIGBUS when a later page is written. The file is removed, so nothing half-made is read."""
    try:
        fd = os.open(file, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)
    except OSError as e:
        size = file.stat().st_size if file.exists() else 0
        file.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(file.parent).free
            raise FileAccessError(f"activation buffer: {file} needs {size / 2**30:.2f} GiB and the disk has "
                                  f"{free / 2**30:.2f} GiB free; free some space, choose a workspace on another disk, "
                                  "or train in one pass (--epochs 1, no buffer).") from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem without fallocate: written as it goes
            raise file_error(e, file, "write") from None


__all__ = ["ARTIFACT", "ActivationBuffer", "buffer_name", "buffer_stream", "write_buffer"]
