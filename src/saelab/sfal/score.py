"""SFAL's alignment score: for each latent, NDCG of its φ-ranked co-occurrence neighbours
against the ranking by similarity of explanations (Crisp-Unimib/SFAL, EMNLP 2025 Industry).

Over the m candidate latents (alive AND explained; the others are masked out of both
rankings), with n = min(top_n, m − 1):
- semantic list of i: the n latents with the largest cosine of explanation embeddings;
- φ list of i: the n latents with the largest φ with i (ties: lower latent id first);
- relevance of the latent at rank r (0-based) of the semantic list: 1.1^(n − r) − 1;
- DCG = Σ_r rel(φ list[r]) / log2(r + 2); IDCG = the same over the semantic list;
  NDCG = DCG / IDCG (SFAL: n = 1023).
Also the plain overlap |φ top-k ∩ semantic top-k| / k.

φ of pairs that never co-occur (n11 = 0) is −√(n_i n_j / ((N − n_i)(N − n_j))): it only
depends on n_j, so the dense ranking over all latents is rebuilt exactly from the sparse
counts (co-occurring pairs merged with the rarest non-co-occurring latents).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..cooc.metrics import phi, top_k_dense


def semantic_top(vectors: np.ndarray, n: int, block_bytes: int = 256 << 20) -> np.ndarray:
    """vectors: float32 [m, dim] unit rows → int32 [m, n]: most similar other rows, best first."""
    m = vectors.shape[0]
    out = np.empty((m, n), np.int32)
    step = max(1, block_bytes // (8 * max(m, 1)))
    for r0 in range(0, m, step):
        sim = (vectors[r0 : r0 + step] @ vectors.T).astype(np.float64)  # [rows, m]
        rows = np.arange(sim.shape[0])
        sim[rows, r0 + rows] = -np.inf  # never its own neighbour
        out[r0 : r0 + step] = top_k_dense(sim, n)[0]
    return out


def phi_top(sym: sp.csr_matrix, counts: np.ndarray, n_windows: int, n: int) -> np.ndarray:
    """sym: int [m, m] co-occurrence n11 between candidates (zero diagonal), counts: int [m]
    window counts → int32 [m, n]: the candidates with the largest φ, best first (ties: lower id)."""
    m = counts.size
    by_count = np.lexsort((np.arange(m), counts))  # non-co-occurring j in decreasing φ
    out = np.empty((m, n), np.int32)
    for i in range(m):
        lo, hi = sym.indptr[i], sym.indptr[i + 1]
        js, n11 = sym.indices[lo:hi], sym.data[lo:hi]
        if counts[i] in (0, n_windows):  # never or always fires: φ = 0 with everyone
            out[i] = np.delete(np.arange(m), i)[:n]
            continue
        head = by_count[: n + js.size + 1]
        other = head[(head != i) & ~np.isin(head, js)][:n]
        ids = np.r_[js, other]
        score = np.r_[phi(n11, counts[i], counts[js], n_windows), phi(0, counts[i], counts[other], n_windows)]
        out[i] = ids[np.lexsort((ids, -score))[:n]]
    return out


def relevance(n: int) -> np.ndarray:
    """float64 [n]: SFAL's relevance of semantic ranks 0..n−1: 1.1^(n − r) − 1."""
    return 1.1 ** (n - np.arange(n, dtype=np.float64)) - 1.0


def _rank_in(lists: np.ndarray, items: np.ndarray) -> np.ndarray:
    """int64 [m, c]: rank of items[i, c] in lists[i] (−1 if absent). Row-wise, vectorised."""
    m, n = lists.shape
    big = np.int64(max(int(lists.max(initial=0)), int(items.max(initial=0))) + 1)
    keys = lists.astype(np.int64) + np.arange(m, dtype=np.int64)[:, None] * big  # unique per row
    order = np.argsort(keys, axis=None)
    sorted_keys = keys.ravel()[order]
    q = items.astype(np.int64) + np.arange(m, dtype=np.int64)[:, None] * big
    pos = np.clip(np.searchsorted(sorted_keys, q.ravel()), 0, sorted_keys.size - 1)
    found = sorted_keys[pos] == q.ravel()
    return np.where(found, order[pos] % n, -1).reshape(items.shape)


def ndcg(phi_lists: np.ndarray, sem_lists: np.ndarray) -> np.ndarray:
    """float64 [m]: NDCG of each row's φ list against its semantic list (both [m, n])."""
    m, n = sem_lists.shape
    if n == 0:
        return np.full(m, np.nan)
    rel = relevance(n)
    discount = 1.0 / np.log2(np.arange(n) + 2.0)
    rank = _rank_in(sem_lists, phi_lists)  # [m, n]: semantic rank of each φ neighbour
    gains = np.where(rank >= 0, rel[np.maximum(rank, 0)], 0.0)
    return (gains * discount).sum(axis=1) / float((rel * discount).sum())


def overlap(phi_lists: np.ndarray, sem_lists: np.ndarray, k: int) -> np.ndarray:
    """float64 [m]: |φ top-k ∩ semantic top-k| / k."""
    k = min(k, sem_lists.shape[1])
    if k == 0:
        return np.full(phi_lists.shape[0], np.nan)
    return (_rank_in(sem_lists[:, :k], phi_lists[:, :k]) >= 0).sum(axis=1) / k


def permuted_lists(sem_lists: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """The semantic lists after explanations are shuffled across latents (latent i gets the
    explanation of perm[i]): sim'(i, j) = sim(perm i, perm j), so no re-embedding is needed."""
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(perm.size)
    return inverse[sem_lists[perm]].astype(np.int32)
