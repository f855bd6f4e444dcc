"""Sparse co-occurrence counts from a latent store.

B[window, latent] = 1 if the latent fires anywhere in the window; C = BᵀB. Windows are
built chunk by chunk as the store's shards are read (a co-occurrence window may span two
shards: its firings wait until the window is complete). B is a scipy sparse matrix; each
chunk's BᵀB is computed on the latents active in the chunk only, in bounded dense tiles
(see `chunk_pairs`), and only its non-zero pairs are kept: memory is the number of
co-occurring pairs, never d_sae².
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file

from .._io import atomic_path
from ..latents.store import LatentStore, ShardMatrix
from ..progress import token_progress
from .windows import WindowMap

log = logging.getLogger(__name__)
COUNTS_FILE = "counts.safetensors"


@dataclass
class CoocCounts:
    """Window counts of every latent and of every pair of latents."""

    n_windows: int
    """N: co-occurrence windows counted (read from the data, never configured)."""
    latent_counts: np.ndarray
    """int64 [d_sae]: windows where each latent fires (the diagonal of C)."""
    pairs: sp.csr_matrix
    """int32 [d_sae, d_sae], strictly upper triangular: pairs[i, j] (i < j) = windows
    where both fire. Pairs that never co-occur are not stored."""

    @property
    def d_sae(self) -> int:
        return int(self.latent_counts.size)

    def symmetric(self) -> sp.csr_matrix:
        """int32 [d_sae, d_sae]: n11 for i ≠ j (both triangles), zero diagonal."""
        return (self.pairs + self.pairs.T).tocsr()

    def dense(self) -> np.ndarray:
        """int64 [d_sae, d_sae]: the full C (small dictionaries and tests only)."""
        c = self.symmetric().toarray().astype(np.int64)
        np.fill_diagonal(c, self.latent_counts)
        return c

    def save(self, directory: Path) -> Path:
        p = self.pairs
        tensors = {"latent_counts": self.latent_counts.astype(np.int64), "n_windows": np.array([self.n_windows]),
                   "pairs_indptr": p.indptr.astype(np.int64), "pairs_indices": p.indices.astype(np.int32),
                   "pairs_data": p.data.astype(np.int32)}
        with atomic_path(directory / COUNTS_FILE) as tmp:
            save_file(tensors, str(tmp))
        return directory / COUNTS_FILE

    @classmethod
    def load(cls, directory: Path) -> "CoocCounts":
        t = load_file(str(Path(directory) / COUNTS_FILE))
        d = int(t["latent_counts"].size)
        pairs = sp.csr_matrix((t["pairs_data"], t["pairs_indices"], t["pairs_indptr"]), shape=(d, d))
        return cls(int(t["n_windows"][0]), t["latent_counts"], pairs)


def _shards(store: LatentStore, limit: int) -> Iterator[ShardMatrix]:
    """The store's shards that start before stream position `limit`, one at a time, with progress."""
    with token_progress(min(limit, store.n_windows * store.ctx_len), "cooc") as advance:
        for shard in store.iter_csr():
            g0 = shard.window_start * store.ctx_len
            if g0 >= limit:
                return
            yield shard
            advance(min(shard.window_stop * store.ctx_len, limit) - g0)


def _firing_pairs(store: LatentStore, wmap: WindowMap) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Per shard: (first position of the next shard, window ids, latents) of every firing,
    expanded to all the co-occurrence windows that contain its position."""
    for shard in _shards(store, wmap.limit):
        g0 = shard.window_start * store.ctx_len
        m = shard.matrix.tocoo()
        g = g0 + m.row.astype(np.int64)  # stream position of each firing
        keep = g < wmap.limit
        g, lat = g[keep], m.col[keep].astype(np.int64)
        lo, hi = wmap.lo[g], wmap.hi[g]
        reps = np.maximum(hi - lo, 0)
        win = np.repeat(lo, reps) + (np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps))
        yield shard.window_stop * store.ctx_len, win, np.repeat(lat, reps)


def _binary_rows(win: np.ndarray, lat: np.ndarray, d_sae: int) -> sp.csr_matrix:
    """B [windows present, d_sae] with 1 where a latent fires in a window (duplicates merged)."""
    _, row = np.unique(win, return_inverse=True)
    b = sp.csr_matrix((np.ones(win.size, np.int32), (row, lat)), shape=(int(row.max()) + 1, d_sae))
    b.sum_duplicates()
    b.data[:] = 1
    return b


def chunk_pairs(b: sp.csr_matrix, tile_bytes: int = 256 << 20) -> sp.csr_matrix:
    """Strict upper triangle of BᵀB (int32 [d_sae, d_sae], sparse) for one chunk of windows.

    Only the u latents active in the chunk take part: B restricted to them is a dense 0/1
    [windows, u] block, and BᵀB is computed tile by tile (rows [r0, r1) × columns [r0, u))
    with a float32 GEMM, exact while a chunk has < 2²⁴ windows. A tile holds at most
    `tile_bytes`; only its non-zero pairs are kept, already in CSR order (active latents
    are sorted, `nonzero` is row-major). Cost: windows·u²/2 multiply-adds at BLAS speed,
    against SFAL's windows·d_sae² scattered integer adds."""
    import torch

    d = b.shape[1]
    active = np.flatnonzero(np.diff(b.tocsc().indptr))  # [u], sorted
    u = active.size
    dense = torch.from_numpy(b[:, active].toarray().astype(np.float32))  # [windows, u]
    assert dense.shape[0] < 1 << 24
    row_nnz = np.zeros(d, np.int64)
    cols, vals = [], []
    step = max(1, tile_bytes // (4 * max(u, 1)))
    for r0 in range(0, u, step):
        r1 = min(u, r0 + step)
        tile = dense[:, r0:r1].T @ dense[:, r0:]  # [r1 − r0, u − r0]: pairs (r0 + i, r0 + j)
        tile = torch.triu(tile, diagonal=1)  # strict upper triangle: column > row
        i, j = torch.nonzero(tile, as_tuple=True)
        row_nnz[active[r0:r1]] = np.bincount(i.numpy(), minlength=r1 - r0)
        cols.append(active[j.numpy() + r0].astype(np.int32))
        vals.append(tile[i, j].round().to(torch.int32).numpy())
    indptr = np.r_[0, np.cumsum(row_nnz)]
    return sp.csr_matrix((np.concatenate(vals) if vals else np.zeros(0, np.int32),
                          np.concatenate(cols) if cols else np.zeros(0, np.int32), indptr), shape=(d, d))


def count_windows(store: LatentStore, wmap: WindowMap, chunk_windows: int = 1024) -> CoocCounts:
    """C = BᵀB over the co-occurrence windows of `wmap`, one sparse product per
    `chunk_windows` complete windows (fewer, larger products; bounded pending memory)."""
    d = store.d_sae
    pairs = sp.csr_matrix((d, d), dtype=np.int32)
    diag = np.zeros(d, np.int64)
    pending_w, pending_l = np.zeros(0, np.int64), np.zeros(0, np.int64)
    for next_g, win, lat in _firing_pairs(store, wmap):
        pending_w, pending_l = np.r_[pending_w, win], np.r_[pending_l, lat]
        last = next_g >= wmap.limit or next_g >= store.n_windows * store.ctx_len
        done_below = wmap.n_windows if last else int(wmap.open_from[next_g])
        if not last and (pending_w.size == 0 or done_below - int(pending_w.min()) < chunk_windows):
            continue
        ready = pending_w < done_below
        if ready.any():
            b = _binary_rows(pending_w[ready], pending_l[ready], d)  # [windows, d_sae]
            diag += np.asarray(b.sum(axis=0)).ravel()
            part = chunk_pairs(b)  # [d_sae, d_sae], only co-occurring pairs
            pairs = part if pairs.nnz == 0 else pairs + part
            pending_w, pending_l = pending_w[~ready], pending_l[~ready]
    assert pending_w.size == 0, "windows left incomplete after the last shard"
    pairs.sum_duplicates()
    return CoocCounts(wmap.n_windows, diag, pairs)


def count_tokens(store: LatentStore, text: np.ndarray, limit: int, rows_per_product: int = 1024) -> CoocCounts:
    """Token-level co-occurrence: every text position < limit is a window.
    text: bool [n_windows·ctx_len], True at text (not excluded) positions."""
    d = store.d_sae
    pairs = sp.csr_matrix((d, d), dtype=np.int32)
    diag = np.zeros(d, np.int64)
    for shard in _shards(store, limit):
        g0 = shard.window_start * store.ctx_len
        n = min(shard.matrix.shape[0], max(0, limit - g0))
        for r0 in range(0, n, rows_per_product):
            b = shard.matrix[r0 : min(n, r0 + rows_per_product)].astype(bool).astype(np.int32)
            diag += np.asarray(b.sum(axis=0)).ravel()
            pairs = pairs + chunk_pairs(b)
    n_text = int(text[:limit].sum())
    return CoocCounts(n_text, diag, pairs)
