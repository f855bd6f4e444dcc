"""Association measures of latent pairs from window counts, and top-k neighbours.

For latents i, j over N windows: n11 = C[i, j], n1· = C[i, i], n·1 = C[j, j],
n10 = n1· − n11, n01 = n·1 − n11, n00 = N − n1· − n·1 + n11, n0· = N − n1·, n·0 = N − n·1.

- φ (Matthews) = (n11·n00 − n10·n01) / √(n1·n0·n·1n·0); 0 where the denominator is 0
  (a latent that never fires, or fires in every window) — SFAL's convention.
- Jaccard = n11 / (n1· + n·1 − n11).
- NPMI = log(p11 / (p1·p·1)) / −log p11 with p = n / N; 1 when p11 = 1 (Bouma 2009).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp

Measure = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


def phi(n11: np.ndarray, ni: np.ndarray, nj: np.ndarray, n: int) -> np.ndarray:
    """float64 [...]: φ coefficient of pairs (broadcasts)."""
    n11, ni, nj = (np.asarray(a, np.float64) for a in (n11, ni, nj))
    n00 = n - ni - nj + n11
    num = n11 * n00 - (ni - n11) * (nj - n11)
    den = ni * (n - ni) * nj * (n - nj)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / np.sqrt(np.where(den > 0, den, 1.0)), 0.0)
    return np.clip(out, -1.0, 1.0)


def jaccard(n11: np.ndarray, ni: np.ndarray, nj: np.ndarray, n: int) -> np.ndarray:
    """float64 [...]: |i ∧ j| / |i ∨ j| over windows (0 when neither fires)."""
    union = np.asarray(ni, np.float64) + nj - n11
    return np.where(union > 0, n11 / np.where(union > 0, union, 1.0), 0.0)


def npmi(n11: np.ndarray, ni: np.ndarray, nj: np.ndarray, n: int) -> np.ndarray:
    """float64 [...]: normalised PMI in [−1, 1]; −1 for pairs that never co-occur."""
    n11, ni, nj = (np.asarray(a, np.float64) for a in (n11, ni, nj))
    with np.errstate(invalid="ignore", divide="ignore"):
        p11 = n11 / n
        pmi = np.log(p11) - np.log(ni / n) - np.log(nj / n)
        out = np.where(p11 >= 1.0, 1.0, pmi / -np.log(p11))
    return np.where(n11 > 0, np.clip(out, -1.0, 1.0), -1.0)


MEASURES: dict[str, Measure] = {"phi": phi, "jaccard": jaccard, "npmi": npmi}


def top_k_dense(dense: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `dense` [r, c], the k largest finite entries, largest first (ties: lower
    column first; −inf = not a candidate). Returns (index int32 [r, k] padded with −1,
    score float64 [r, k] padded with NaN)."""
    import torch

    n_rows, n_cols = dense.shape
    k_eff = min(k, n_cols)
    index = np.full((n_rows, k), -1, np.int32)
    value = np.full((n_rows, k), np.nan)
    if k_eff == 0 or n_rows == 0:
        return index, value
    kth = torch.topk(torch.from_numpy(dense), k_eff, dim=1).values[:, -1].numpy()  # k-th largest per row
    r, c = np.nonzero((dense >= kth[:, None]) & (dense > -np.inf))  # ties at the k-th value included
    v = dense[r, c]
    order = np.lexsort((c, -v, r))
    r, c, v = r[order], c[order], v[order]
    rank = np.arange(r.size) - np.searchsorted(r, r, side="left")
    keep = rank < k
    index[r[keep], rank[keep]] = c[keep]
    value[r[keep], rank[keep]] = v[keep]
    return index, value


def top_k_neighbours(upper: sp.csr_matrix, latent_counts: np.ndarray, n: int, k: int,
                     measures: dict[str, Measure] = MEASURES,
                     block_bytes: int = 256 << 20) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per measure, per latent, the k co-occurring latents of largest score, largest first (ties: lower column
    first), without the symmetric float64 score matrix of every pair. Rows are
    scored a block at a time from the pairs (`upper`) and their transpose, in dense [rows, d_sae] float64
    blocks of at most `block_bytes`. Memory: twice the pairs plus one block.

    Returns {measure: (index int32 [d, k] padded with −1, score float32 [d, k] padded with NaN)}."""
    d = upper.shape[0]
    lower = upper.T.tocsr()  # row i: its pairs (i, j) with j < i
    out = {name: (np.full((d, k), -1, np.int32), np.full((d, k), np.nan, np.float32)) for name in measures}
    step = max(1, block_bytes // (8 * max(d, 1)))
    for r0 in range(0, d, step):
        r1 = min(d, r0 + step)
        parts = [(np.repeat(np.arange(r0, r1), np.diff(m.indptr[r0 : r1 + 1])),
                  m.indices[m.indptr[r0] : m.indptr[r1]], m.data[m.indptr[r0] : m.indptr[r1]]) for m in (upper, lower)]
        row, col, n11 = (np.concatenate(a) for a in zip(*parts))
        i, j = np.minimum(row, col), np.maximum(row, col)  # each pair scored once, as (i < j)
        for name, measure in measures.items():
            dense = np.full((r1 - r0, d), -np.inf)  # [rows, d]: −inf = not a neighbour
            dense[row - r0, col] = measure(n11, latent_counts[i], latent_counts[j], n)
            index, value = top_k_dense(dense, k)
            out[name][0][r0:r1], out[name][1][r0:r1] = index, value
    return out
