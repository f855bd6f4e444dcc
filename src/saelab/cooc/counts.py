"""Sparse co-occurrence counts from a latent store.

B[window, latent] = 1 if the latent fires anywhere in the window; C = BᵀB. Windows are
built chunk by chunk as the store's shards are read (a co-occurrence window may span two
shards: its firings wait until the window is complete). B is a scipy sparse matrix; each
chunk's BᵀB is computed on the latents active in the chunk only, in bounded dense tiles
(see `chunk_pairs`; or by scipy's sparse product where few of them fire per window), and only
its non-zero pairs are kept; the chunks are summed in a binary-counter pattern (`PairSum`), so
each pair is re-added O(log chunks) times. Memory is the number of co-occurring pairs (at most
about twice it while partial sums wait), never d_sae².

Index widths: the pair matrix's indices and pointers are int32 while it has < 2³¹ − 1 stored
pairs and int64 beyond, and its counts int32 while N < 2³¹ − 1 windows (`index_dtype`); every
sum of chunks is widened before scipy adds them (`add_pairs`), never after it has wrapped.

Under torchrun each rank counts a contiguous block of the co-occurrence windows (tokens at
token level); whole windows never straddle two ranks, so the sum of the ranks' counts is the
count of one process, exactly (`sum_partials`: ranks > 0 write their partial counts beside the
output, rank 0 adds them one at a time).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file

from .._io import atomic_path
from ..distributed import barrier, is_main, rank_and_world
from ..latents.shard import index_dtype
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
    """[d_sae, d_sae], strictly upper triangular: pairs[i, j] (i < j) = windows where both
    fire, int32 (int64 from 2³¹ − 1 windows). Pairs that never co-occur are not stored."""

    @property
    def d_sae(self) -> int:
        return int(self.latent_counts.size)

    def symmetric(self) -> sp.csr_matrix:
        """[d_sae, d_sae]: n11 for i ≠ j (both triangles), zero diagonal (twice the pairs' memory)."""
        return (self.pairs + self.pairs.T).tocsr()

    def dense(self) -> np.ndarray:
        """int64 [d_sae, d_sae]: the full C (small dictionaries and tests only: refused above 8,192 latents)."""
        assert self.d_sae <= 8192, "a dense d_sae × d_sae count matrix is for tests of small dictionaries"
        c = self.symmetric().toarray().astype(np.int64)
        np.fill_diagonal(c, self.latent_counts)
        return c

    def save(self, directory: Path, file: str = COUNTS_FILE) -> Path:
        """Write the counts (indptr int64, indices int32, counts int32 or int64: see `count_dtype`), atomically."""
        p = self.pairs
        tensors = {"latent_counts": self.latent_counts.astype(np.int64), "n_windows": np.array([self.n_windows]),
                   "pairs_indptr": p.indptr.astype(np.int64), "pairs_indices": p.indices.astype(np.int32),
                   "pairs_data": p.data.astype(count_dtype(self.n_windows))}
        with atomic_path(directory / file) as tmp:
            save_file(tensors, str(tmp))
        return directory / file

    @classmethod
    def load(cls, directory: Path, file: str = COUNTS_FILE) -> "CoocCounts":
        t = load_file(str(Path(directory) / file))
        d = int(t["latent_counts"].size)
        pairs = pair_matrix(t["pairs_data"], t["pairs_indices"], t["pairs_indptr"], d)
        return cls(int(t["n_windows"][0]), t["latent_counts"], pairs)


def count_dtype(n_windows: int) -> np.dtype:
    """dtype of pair counts over `n_windows` windows: int32, or int64 from 2³¹ − 1 windows (token level)."""
    return index_dtype(n_windows)


def pair_matrix(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, d: int) -> sp.csr_matrix:
    """A [d, d] CSR with indices and pointers of the width its size needs (`index_dtype`), chosen here
    rather than left to scipy."""
    return with_index_dtype(sp.csr_matrix((data, indices, indptr), shape=(d, d)),
                            index_dtype(max(int(indptr[-1]) if indptr.size else 0, d)))


def with_index_dtype(m: sp.csr_matrix, idx: np.dtype) -> sp.csr_matrix:
    """`m` with indices and pointers of dtype `idx` (set after construction: scipy's constructor narrows
    int64 arrays whose values fit in int32, and its later sums would then start from int32)."""
    m.indices, m.indptr = m.indices.astype(idx, copy=False), m.indptr.astype(idx, copy=False)
    return m


def add_pairs(a: sp.csr_matrix, b: sp.csr_matrix, dtype: np.dtype) -> sp.csr_matrix:
    """a + b with counts of `dtype`, the operands widened first to the index width their sum can need (up to
    a.nnz + b.nnz stored pairs), so no pointer or count wraps past 2³¹ − 1 inside scipy."""
    if b.nnz == 0:
        return a if a.dtype == dtype else a.astype(dtype)
    if a.nnz == 0:
        return b if b.dtype == dtype else b.astype(dtype)
    idx = index_dtype(a.nnz + b.nnz + max(a.shape))
    a, b = (with_index_dtype(m if m.dtype == dtype else m.astype(dtype), idx) for m in (a, b))
    out = (a + b).tocsr()
    out = out if out.dtype == dtype else out.astype(dtype)
    # scipy may narrow the sum's indices again where its values fit (seen to depend on what ran before in the
    # process): set the width the operands could need, so the next sum starts from it
    return out if out.indptr.dtype.itemsize >= idx.itemsize else with_index_dtype(out, idx)


class PairSum:
    """The running sum of the chunks' pair matrices, added in a binary-counter pattern: a chunk's pairs join the
    last partial sum only once they are as many, so each pair is re-added O(log chunks) times instead of once
    per later chunk (adding every chunk to one growing matrix costs chunks × pairs: quadratic at 10M tokens)."""

    def __init__(self, d: int, dtype: np.dtype):
        self.d, self.dtype = d, dtype
        self.parts: list[sp.csr_matrix] = []  # partial sums, each at least twice the next one's stored pairs

    def add(self, m: sp.csr_matrix) -> None:
        while self.parts and self.parts[-1].nnz <= 2 * m.nnz:
            m = add_pairs(self.parts.pop(), m, self.dtype)
        self.parts.append(m)

    def total(self) -> sp.csr_matrix:
        out = sp.csr_matrix((self.d, self.d), dtype=self.dtype)
        while self.parts:  # smallest first
            out = add_pairs(self.parts.pop(), out, self.dtype)
        return out


def _shards(store: LatentStore, g_lo: int, g_hi: int) -> Iterator[ShardMatrix]:
    """The store's shards that hold stream positions [g_lo, g_hi), one at a time, with progress (rank 0)."""
    ctx = store.ctx_len
    view = copy.copy(store)  # reads only these shards' files
    view.shards = [s for s in store.shards if s.window_stop * ctx > g_lo and s.window_start * ctx < g_hi]
    with token_progress(max(g_hi - g_lo, 0), "cooc", enabled=is_main()) as advance:
        for shard in view.iter_csr():
            yield shard
            advance(min(shard.window_stop * ctx, g_hi) - max(shard.window_start * ctx, g_lo))


def _firing_pairs(store: LatentStore, wmap: WindowMap, w_lo: int, w_hi: int,
                  g_lo: int, g_hi: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Per shard: (first position of the next shard, window ids, latents) of every firing at positions
    [g_lo, g_hi), expanded to the co-occurrence windows of [w_lo, w_hi) that contain its position."""
    for shard in _shards(store, g_lo, g_hi):
        g0 = shard.window_start * store.ctx_len
        m = shard.matrix.tocoo()
        g = g0 + m.row.astype(np.int64)  # stream position of each firing
        keep = (g >= g_lo) & (g < g_hi)
        g, lat = g[keep], m.col[keep].astype(np.int64)
        lo, hi = np.maximum(wmap.lo[g], w_lo), np.minimum(wmap.hi[g], w_hi)
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


SPARSE_PRODUCT_ADVANTAGE = 50
"""`chunk_pairs` takes scipy's sparse BᵀB when the dense GEMM's multiply-adds (windows·u²/2) exceed this many
times the sparse product's (Σ per-window latents²): on the 2-core EPYC the GEMM ran 0.8–2·10¹⁰ multiply-adds/s,
the sparse product 1.4·10⁷–2.8·10⁸ pair updates/s; at a ratio of 52 the two took the same time."""


def chunk_pairs(b: sp.csr_matrix, tile_bytes: int = 256 << 20) -> sp.csr_matrix:
    """Strict upper triangle of BᵀB (int32 [d_sae, d_sae], sparse) for one chunk of windows.

    Only the u latents active in the chunk take part: B restricted to them is a dense 0/1
    [windows, u] block, and BᵀB is computed tile by tile (rows [r0, r1) × columns [r0, u))
    with a float32 GEMM, exact while a chunk has < 2²⁴ windows. A tile holds at most
    `tile_bytes`; only its non-zero pairs are kept, already in CSR order (active latents
    are sorted, `nonzero` is row-major). Cost: windows·u²/2 multiply-adds at BLAS speed,
    against SFAL's windows·d_sae² scattered integer adds. Where few of the u latents fire per window (a wide
    dictionary, token level) scipy's sparse product is taken instead (`SPARSE_PRODUCT_ADVANTAGE`)."""
    import torch

    d = b.shape[1]
    active = np.flatnonzero(np.diff(b.tocsc().indptr))  # [u], sorted
    u = active.size
    per_row = np.diff(b.indptr).astype(np.float64)
    if b.shape[0] * u * u / 2 > SPARSE_PRODUCT_ADVANTAGE * float((per_row**2).sum()):
        # few latents per window among many active ones (token level, wide dictionaries): the GEMM would multiply
        # mostly zeros, so a sparse product does the windows·k² pair updates alone (131,072 latents, 1,024 tokens
        # of k 32: 0.04 s against 15 s)
        c = sp.triu(b.T.tocsr() @ b, k=1, format="csr")
        c.sort_indices()
        return pair_matrix(c.data.astype(np.int32, copy=False), c.indices, c.indptr.astype(np.int64), d)
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
    indptr = np.r_[0, np.cumsum(row_nnz)]  # int64: one chunk alone may pass 2³¹ − 1 pairs
    return pair_matrix(np.concatenate(vals) if vals else np.zeros(0, np.int32),
                       np.concatenate(cols) if cols else np.zeros(0, np.int32), indptr, d)


def count_windows(store: LatentStore, wmap: WindowMap, chunk_windows: int = 1024,
                  window_range: tuple[int, int] | None = None) -> CoocCounts:
    """C = BᵀB over the co-occurrence windows of `wmap` (those of `window_range` only, a rank's share:
    N stays the total), one sparse product per `chunk_windows` complete windows (fewer, larger products;
    bounded pending memory)."""
    d, dtype = store.d_sae, count_dtype(wmap.n_windows)
    w_lo, w_hi = window_range or (0, wmap.n_windows)
    g_lo, g_hi = wmap.positions(w_lo, w_hi)
    pairs = PairSum(d, dtype)
    diag = np.zeros(d, np.int64)
    pending_w, pending_l = np.zeros(0, np.int64), np.zeros(0, np.int64)
    for next_g, win, lat in _firing_pairs(store, wmap, w_lo, w_hi, g_lo, g_hi):
        pending_w, pending_l = np.r_[pending_w, win], np.r_[pending_l, lat]
        last = next_g >= g_hi
        done_below = w_hi if last else min(int(wmap.open_from[next_g]), w_hi)
        if not last and (pending_w.size == 0 or done_below - int(pending_w.min()) < chunk_windows):
            continue
        ready = pending_w < done_below
        if ready.any():
            b = _binary_rows(pending_w[ready], pending_l[ready], d)  # [windows, d_sae]
            diag += np.asarray(b.sum(axis=0)).ravel()
            pairs.add(chunk_pairs(b))  # [d_sae, d_sae], only co-occurring pairs
            pending_w, pending_l = pending_w[~ready], pending_l[~ready]
    assert pending_w.size == 0, "windows left incomplete after the last shard"
    total = pairs.total()
    total.sum_duplicates()
    return CoocCounts(wmap.n_windows, diag, total)


def count_tokens(store: LatentStore, text: np.ndarray, limit: int, rows_per_product: int = 1024,
                 position_range: tuple[int, int] | None = None) -> CoocCounts:
    """Token-level co-occurrence: every text position < limit is a window (those of `position_range` only,
    a rank's share: N stays the total). text: bool [n_windows·ctx_len], True at text (not excluded) positions."""
    d, n_text = store.d_sae, int(text[:limit].sum())
    dtype = count_dtype(n_text)
    p_lo, p_hi = position_range or (0, limit)
    pairs = PairSum(d, dtype)
    diag = np.zeros(d, np.int64)
    for shard in _shards(store, p_lo, p_hi):
        g0 = shard.window_start * store.ctx_len
        r_lo, r_hi = max(0, p_lo - g0), min(shard.matrix.shape[0], p_hi - g0)
        for r0 in range(r_lo, r_hi, rows_per_product):
            b = shard.matrix[r0 : min(r_hi, r0 + rows_per_product)].astype(bool).astype(np.int32)
            diag += np.asarray(b.sum(axis=0)).ravel()
            pairs.add(chunk_pairs(b))
    return CoocCounts(n_text, diag, pairs.total())


def sum_partials(counts: CoocCounts, scratch: Path) -> CoocCounts:
    """Under torchrun: on rank 0 the sum of every rank's counts (each rank > 0 writes its own to `scratch`,
    a directory every rank sees; rank 0 adds them one at a time, so it holds at most its sum and one
    partial); on the other ranks their own counts. Without a process group, `counts` itself."""
    rank, world = rank_and_world()
    if world == 1:
        return counts
    partial = f"partial.rank-{rank}.safetensors"
    if rank > 0:
        scratch.mkdir(parents=True, exist_ok=True)
        counts.save(scratch, partial)
    barrier()
    if rank > 0:
        return counts
    dtype = count_dtype(counts.n_windows)
    for r in range(1, world):
        part = CoocCounts.load(scratch, f"partial.rank-{r}.safetensors")
        assert part.n_windows == counts.n_windows and part.d_sae == counts.d_sae
        counts = CoocCounts(counts.n_windows, counts.latent_counts + part.latent_counts,
                            add_pairs(counts.pairs, part.pairs, dtype))
        (scratch / f"partial.rank-{r}.safetensors").unlink()
    return counts
