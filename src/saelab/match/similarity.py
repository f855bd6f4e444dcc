"""All-pairs similarity between two dictionaries: blockwise cosine of directions, and the
Pearson correlation of activations computed from the sparse latent stores.

Nothing here loops over latents in Python: cosines are row blocks of one matrix product,
correlations come from the moments Σx, Σx², XᵀY of sparse shard matrices (zeros counted).

Memory: `cosine_matrix`, `activation_moments` and `pearson` build the dense [d_a, d_b] matrix
(4 · d_a · d_b bytes: 8.6 GB at 131,072 × 16,384), so `match` uses them only up to
`MatchConfig.dense_limit` entries. Above it, `cosine_topk` and `pearson_topk` keep each row's
and column's top k (`topk.TopK`) and hold one block of `block` rows at a time: a float32
[block, d_b] block and its float64 Pearson sub-blocks, ≈ 0.4 GB at block 4,096 × 16,384. The
Pearson blocks cost one pass over both stores per block of A's latents (d_a / block passes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from ..latents.store import LatentStore
from .config import MatchConfig
from .topk import TopK, TopKAccumulator

log = logging.getLogger(__name__)


def unit_rows(W: np.ndarray | torch.Tensor) -> np.ndarray:
    """float32 [n, d]: each row scaled to unit L2 norm (zero rows stay zero)."""
    W = W.detach().float().cpu().numpy() if isinstance(W, torch.Tensor) else np.asarray(W, np.float32)
    norms = np.linalg.norm(W, axis=1, keepdims=True)
    return (W / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def cosine_matrix(a: np.ndarray, b: np.ndarray, block: int = 4096) -> np.ndarray:
    """float32 [n_a, n_b]: cosine of every row of `a` [n_a, d] with every row of `b` [n_b, d].

    Computed in row blocks of `a` (one float32 GEMM each) into one preallocated array.
    """
    ua, ub = torch.from_numpy(unit_rows(a)), torch.from_numpy(unit_rows(b))
    out = np.empty((ua.shape[0], ub.shape[0]), np.float32)
    for lo in range(0, ua.shape[0], block):
        out[lo : lo + block] = (ua[lo : lo + block] @ ub.T).numpy()  # [block, n_b]
    return out


class BestPairs(NamedTuple):
    """Row and column maxima of a similarity matrix that is never held whole."""

    row_best: np.ndarray
    """int64 [n_a]: the column with the largest value in each row"""
    row_max: np.ndarray
    """float32 [n_a]"""
    col_best: np.ndarray
    """int64 [n_b]"""
    col_max: np.ndarray
    """float32 [n_b]"""


def cosine_best(a: np.ndarray, b: np.ndarray, block: int = 4096) -> BestPairs:
    """Row and column maxima of the cosine matrix of `a` [n_a, d] and `b` [n_b, d], blockwise (the rows of
    `a` are normalised a block at a time: no unit copy of `a` is held)."""
    ub = torch.from_numpy(unit_rows(b))
    row_best, row_max = np.empty(a.shape[0], np.int64), np.empty(a.shape[0], np.float32)
    col_max = torch.full((ub.shape[0],), -2.0)
    col_best = torch.zeros(ub.shape[0], dtype=torch.int64)
    for lo in range(0, a.shape[0], block):
        s = torch.from_numpy(unit_rows(a[lo : lo + block])) @ ub.T  # [block, n_b]
        v, i = s.max(dim=1)
        row_max[lo : lo + block], row_best[lo : lo + block] = v.numpy(), i.numpy()
        cv, ci = s.max(dim=0)
        better = cv > col_max
        col_max[better], col_best[better] = cv[better], ci[better] + lo
    return BestPairs(row_best, row_max, col_best.numpy(), col_max.numpy())


def cosine_topk(a: np.ndarray, b: np.ndarray, k: int, block: int = 4096) -> TopK:
    """Each row's and each column's k largest cosines of `a` [n_a, d] and `b` [n_b, d], blockwise.

    Memory: the unit rows of `b`, one float32 [block, n_b] product and the candidates; never [n_a, n_b]
    (the rows of `a` are normalised a block at a time).
    """
    ub = torch.from_numpy(unit_rows(b))
    acc = TopKAccumulator(a.shape[0], ub.shape[0], k)
    for lo in range(0, a.shape[0], block):
        acc.add(lo, torch.from_numpy(unit_rows(a[lo : lo + block])) @ ub.T)  # [block, n_b]
    return acc.result()


def pair_cosines(a: np.ndarray, b: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float32 [n]: cosine of a[rows[i]] and b[cols[i]] for each listed pair, 16,384 pairs at a time (the
    gathered rows of 150K pairs at d 2,304 would be 1.4 GB per side)."""
    out = np.empty(len(rows), np.float32)
    for lo in range(0, len(rows), 16384):
        ua, ub = unit_rows(a[rows[lo : lo + 16384]]), unit_rows(b[cols[lo : lo + 16384]])
        out[lo : lo + 16384] = np.einsum("nd,nd->n", ua, ub)
    return out


# -- activations ------------------------------------------------------------------------------
def windows_mismatch(a: LatentStore, b: LatentStore) -> str | None:
    """Why the two stores' activations cannot be compared token by token, or None if they can."""
    if a.tokens_hash != b.tokens_hash:
        return (f"the stores were cached over different token windows (tokens_hash {a.tokens_hash} vs "
                f"{b.tokens_hash}); re-run `saelab cache` for both dictionaries on the same workspace tokens")
    if (a.n_windows, a.ctx_len) != (b.n_windows, b.ctx_len):
        return (f"the stores cover different windows ({a.n_windows}×{a.ctx_len} vs {b.n_windows}×{b.ctx_len}); "
                "cache both over the same windows (same --n-windows)")
    if a.cfg.get("excluded") != b.cfg.get("excluded") or a.n_tokens != b.n_tokens:
        return (f"the stores exclude different positions ({a.cfg.get('excluded')} vs {b.cfg.get('excluded')}), "
                "so they are not over the same text tokens; cache both with the same exclusion")
    return None


def aligned_shards(a: LatentStore, b: LatentStore) -> Iterator[tuple[sp.csr_matrix, sp.csr_matrix]]:
    """Pairs of CSR matrices over the same rows (positions), one pair per shard of `a`.

    The stores may be sharded differently: rows of `b` are cut to the windows of each `a` shard.
    """
    ctx = a.ctx_len
    b_iter = b.iter_csr()
    pending: list[tuple[int, int, sp.csr_matrix]] = []  # (window_start, window_stop, matrix) of b
    for sa in a.iter_csr():
        parts, w = [], sa.window_start
        while w < sa.window_stop:
            while not pending or pending[0][1] <= w:
                if pending:
                    pending.pop(0)
                sb = next(b_iter)
                pending.append((sb.window_start, sb.window_stop, sb.matrix))
            start, stop, m = pending[0]
            hi = min(stop, sa.window_stop)
            parts.append(m[(w - start) * ctx : (hi - start) * ctx])
            w = hi
        yield sa.matrix, parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")


@dataclass
class Moments:
    """Sums over the shared text tokens from which every pairwise Pearson r follows."""

    n: int
    """number of text tokens (rows that are excluded positions are zero in both and not counted)"""
    sum_a: np.ndarray
    """float64 [d_a]: Σ x"""
    sumsq_a: np.ndarray
    """float64 [d_a]: Σ x²"""
    sum_b: np.ndarray
    """float64 [d_b]"""
    sumsq_b: np.ndarray
    """float64 [d_b]"""
    cross: np.ndarray
    """float32 [d_a, d_b]: Σ x_a x_b (sparse products: only rows where both fire contribute)"""


def _window_permutation(m: sp.csr_matrix, ctx: int, rng: np.random.Generator) -> sp.csr_matrix:
    """The rows of `m` with its windows (blocks of `ctx` rows) in a random order."""
    n_win = m.shape[0] // ctx
    perm = (rng.permutation(n_win)[:, None] * ctx + np.arange(ctx)[None, :]).ravel()  # [n_win·ctx]
    return m[perm]


def activation_moments(a: LatentStore, b: LatentStore, shuffle_seed: int | None = None) -> Moments:
    """One pass over both stores: Σx, Σx² per latent and the cross products XₐᵀX_b.

    shuffle_seed: if given, the windows of `b` are permuted within each shard (a baseline that
    keeps every latent's firing statistics but breaks the token alignment).
    """
    reason = windows_mismatch(a, b)
    assert reason is None, reason
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
    sum_a, sumsq_a = np.zeros(a.d_sae), np.zeros(a.d_sae)
    sum_b, sumsq_b = np.zeros(b.d_sae), np.zeros(b.d_sae)
    cross = np.zeros((a.d_sae, b.d_sae), np.float32)
    for xa, xb in aligned_shards(a, b):  # [rows, d_a], [rows, d_b]
        if rng is not None:
            xb = _window_permutation(xb, a.ctx_len, rng)
        sum_a += np.asarray(xa.sum(axis=0), np.float64).ravel()
        sumsq_a += np.asarray(xa.multiply(xa).sum(axis=0), np.float64).ravel()
        sum_b += np.asarray(xb.sum(axis=0), np.float64).ravel()
        sumsq_b += np.asarray(xb.multiply(xb).sum(axis=0), np.float64).ravel()
        prod = (xa.T.tocsr() @ xb).tocoo()  # [d_a, d_b], sparse: pairs that ever fire together
        cross[prod.row, prod.col] += prod.data  # entries of a CSR's tocoo are unique
    return Moments(a.n_tokens, sum_a, sumsq_a, sum_b, sumsq_b, cross)


def pearson(m: Moments, block: int = 4096) -> np.ndarray:
    """float32 [d_a, d_b]: Pearson r over the n tokens, zeros included; 0 where a latent never varies.

    r = (n·Σxy − Σx·Σy) / √((n·Σx² − (Σx)²)(n·Σy² − (Σy)²)), computed in float64 row blocks.
    """
    out = np.empty(m.cross.shape, np.float32)
    for lo in range(0, m.cross.shape[0], block):
        out[lo : lo + block] = _pearson_rows(m, lo, m.cross[lo : lo + block])
    return out


def _inverse_sd(n: float, s: np.ndarray, sq: np.ndarray) -> np.ndarray:
    """1 / √(n² × variance) per latent, 0 where the latent never varies."""
    var = np.maximum(n * sq - s**2, 0.0)
    return np.where(var > 0, 1.0 / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)


def _pearson_rows(m: Moments, lo: int, cross: np.ndarray) -> np.ndarray:
    """float32 [rows, d_b]: r of A's latents lo … lo + rows, from their cross sums `cross` [rows, d_b]."""
    n, hi = float(m.n), lo + cross.shape[0]
    inv_a = _inverse_sd(n, m.sum_a[lo:hi], m.sumsq_a[lo:hi])
    inv_b = _inverse_sd(n, m.sum_b, m.sumsq_b)  # [d_b]
    cov = n * cross.astype(np.float64) - np.outer(m.sum_a[lo:hi], m.sum_b)  # [rows, d_b]
    return np.clip(cov * inv_a[:, None] * inv_b[None, :], -1.0, 1.0).astype(np.float32)


def _sums(a: LatentStore, b: LatentStore) -> Moments:
    """The per-latent moments of both stores (one pass), with an empty `cross`."""
    sum_a, sumsq_a, sum_b, sumsq_b = np.zeros(a.d_sae), np.zeros(a.d_sae), np.zeros(b.d_sae), np.zeros(b.d_sae)
    for xa, xb in aligned_shards(a, b):
        sum_a += np.asarray(xa.sum(axis=0), np.float64).ravel()
        sumsq_a += np.asarray(xa.multiply(xa).sum(axis=0), np.float64).ravel()
        sum_b += np.asarray(xb.sum(axis=0), np.float64).ravel()
        sumsq_b += np.asarray(xb.multiply(xb).sum(axis=0), np.float64).ravel()
    return Moments(a.n_tokens, sum_a, sumsq_a, sum_b, sumsq_b, np.zeros((0, b.d_sae), np.float32))


def pearson_topk(a: LatentStore, b: LatentStore, k: int, block: int = 4096,
                 shuffle_seed: int | None = None) -> TopK:
    """Each latent's k largest Pearson r with the other store's latents, never holding [d_a, d_b].

    One pass for the per-latent sums, then one pass over both stores per block of `block` latents
    of A: their cross sums [block, d_b] (float32) become r in float64 sub-blocks of 512 rows.
    shuffle_seed: as in `activation_moments` (the same window order on every pass).
    """
    reason = windows_mismatch(a, b)
    assert reason is None, reason
    m = _sums(a, b)
    acc = TopKAccumulator(a.d_sae, b.d_sae, k)
    for lo in range(0, a.d_sae, block):
        hi = min(lo + block, a.d_sae)
        rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
        cross = np.zeros((hi - lo, b.d_sae), np.float32)
        for xa, xb in aligned_shards(a, b):  # [rows, d_a], [rows, d_b]
            if rng is not None:
                xb = _window_permutation(xb, a.ctx_len, rng)
            prod = (xa[:, lo:hi].T.tocsr() @ xb).tocoo()  # [block, d_b], sparse
            cross[prod.row, prod.col] += prod.data
        for s in range(0, hi - lo, 512):
            acc.add(lo + s, torch.from_numpy(_pearson_rows(m, lo + s, cross[s : s + 512])))
    return acc.result()


def correlation_scores(a: LatentStore, b: LatentStore, config: MatchConfig,
                       shuffle_seed: int | None = None) -> np.ndarray | TopK:
    """Pearson r of every latent pair: the dense [d_a, d_b] matrix up to `config.dense_limit` entries, else each
    latent's `config.candidates` best (`pearson_topk`). shuffle_seed: as in `activation_moments`."""
    if config.is_dense(a.d_sae, b.d_sae):
        return pearson(activation_moments(a, b, shuffle_seed=shuffle_seed))
    return pearson_topk(a, b, config.candidates, config.block_size, shuffle_seed=shuffle_seed)


def pair_pearson(a: LatentStore, b: LatentStore, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float32 [n]: Pearson r of A's latent rows[i] with B's latent cols[i], in one pass over both stores."""
    m = _sums(a, b)
    cross = np.zeros(rows.size)
    for xa, xb in aligned_shards(a, b):
        cross += np.asarray(xa.tocsc()[:, rows].multiply(xb.tocsc()[:, cols]).sum(axis=0), np.float64).ravel()
    n = float(m.n)
    inv_a, inv_b = _inverse_sd(n, m.sum_a, m.sumsq_a)[rows], _inverse_sd(n, m.sum_b, m.sumsq_b)[cols]
    return np.clip((n * cross - m.sum_a[rows] * m.sum_b[cols]) * inv_a * inv_b, -1.0, 1.0).astype(np.float32)
