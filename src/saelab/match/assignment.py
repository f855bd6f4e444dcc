"""From a similarity matrix to matches: one-to-one assignment (Hungarian, or Sinkhorn),
many-to-one best partners, the quality/coverage curve and a random baseline.

Dense matrices (up to `MatchConfig.dense_limit` entries) are solved exactly by scipy's
linear_sum_assignment. Above it the scores are a `TopK` and the one-to-one assignment is
`hungarian_sparse`: exact maximum-weight matching on the candidate graph (each latent's top k
partners on either side), by scipy's min_weight_full_bipartite_matching (LAPJVsp). It equals the
dense optimum whenever the dense optimum uses only candidate pairs; it can differ where it would
pair a latent outside both its own and its partner's top k — then that latent is left without a
partner (a dense assignment would give it a leftover partner scoring below its k-th candidate,
so coverage at any threshold above that score is the same). Memory: the graph's entries,
(n_a + n_b) · k · ~24 B, ≈ 110 MB at 131,072 × 16,384 and k = 32.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from .config import Assignment
from .topk import TopK


class OneToOne(NamedTuple):
    """A one-to-one assignment between the latents of A and B (min(n_a, n_b) pairs)."""

    a: np.ndarray
    """int64 [n_pairs]: latents of A"""
    b: np.ndarray
    """int64 [n_pairs]: their partners in B"""
    score: np.ndarray
    """float32 [n_pairs]: similarity of each pair"""


def hungarian(score: np.ndarray) -> OneToOne:
    """The one-to-one assignment maximising the summed similarity. score: float [n_a, n_b].

    scipy's linear_sum_assignment (shortest augmenting path, Crouse 2016) on the rectangular
    matrix: every latent of the smaller side gets a distinct partner.
    """
    rows, cols = linear_sum_assignment(score, maximize=True)
    return OneToOne(rows.astype(np.int64), cols.astype(np.int64), score[rows, cols].astype(np.float32))


def hungarian_sparse(top: TopK) -> OneToOne:
    """The one-to-one assignment maximising the summed score over the candidate pairs of `top`.

    The smaller side's latents are matched to distinct partners; one that cannot get a free
    candidate (its candidates all taken in the best matching) stays unpaired, so there may be
    fewer than min(n_a, n_b) pairs. Costs are 2 − score ∈ [1, 3] (zero costs would read as
    missing edges); each row of the smaller side also gets a private dummy partner costing more
    than any rearrangement of real pairs (3·n + 3), so the matching always exists and uses as
    many real pairs as the graph allows.
    """
    flip = top.shape[0] > top.shape[1]
    t = top.T if flip else top
    n_r, n_c = t.shape
    r, c, v = t.entries()
    cost = sp.csr_matrix((2.0 - v.astype(np.float64), (r, c)), shape=(n_r, n_c))
    dummy = sp.identity(n_r, format="csr") * (3.0 * n_r + 3.0)  # [n_r, n_r]
    rows, cols = min_weight_full_bipartite_matching(sp.hstack([cost, dummy], format="csr"))
    real = cols < n_c
    rows, cols = rows[real].astype(np.int64), cols[real].astype(np.int64)
    score = t.lookup(rows, cols)
    a, b = (cols, rows) if flip else (rows, cols)
    order = np.argsort(a, kind="stable")
    return OneToOne(a[order], b[order], score[order])


def sinkhorn(score: np.ndarray, temperature: float = 0.05, n_iter: int = 200) -> OneToOne:
    """Entropic (Sinkhorn) assignment: a soft transport plan, rounded one-to-one by Hungarian on it.

    Rows and columns get uniform mass (the larger side gets less per latent); in log space for
    stability. score: float [n_a, n_b].
    """
    n_a, n_b = score.shape
    logk = score.astype(np.float64) / temperature  # [n_a, n_b]
    log_r, log_c = -np.log(n_a), -np.log(n_b)
    u, v = np.zeros(n_a), np.zeros(n_b)
    for _ in range(n_iter):
        u = log_r - _logsumexp(logk + v[None, :], axis=1)
        v = log_c - _logsumexp(logk + u[:, None], axis=0)
    plan = logk + u[:, None] + v[None, :]  # log of the plan
    rows, cols = linear_sum_assignment(plan, maximize=True)
    return OneToOne(rows.astype(np.int64), cols.astype(np.int64), score[rows, cols].astype(np.float32))


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def assign(score: np.ndarray | TopK, method: Assignment) -> OneToOne:
    """One-to-one assignment by `method` ("hungarian" or "sinkhorn"); a `TopK` only by hungarian
    (`MatchConfig` refuses sinkhorn above its dense limit)."""
    if isinstance(score, TopK):
        assert method == "hungarian", "sinkhorn needs the dense matrix"
        return hungarian_sparse(score)
    return hungarian(score) if method == "hungarian" else sinkhorn(score)


class ManyToOne(NamedTuple):
    """Each latent's best partner on the other side (several may share one)."""

    a_best: np.ndarray
    """int64 [n_a]: best latent of B for each latent of A"""
    a_score: np.ndarray
    """float32 [n_a]"""
    b_best: np.ndarray
    """int64 [n_b]: best latent of A for each latent of B"""
    b_score: np.ndarray
    """float32 [n_b]"""


def many_to_one(score: np.ndarray | TopK) -> ManyToOne:
    """Row and column argmax of score [n_a, n_b] (exact from a `TopK`: its first candidates)."""
    if isinstance(score, TopK):
        return ManyToOne(score.row_idx[:, 0], score.row_val[:, 0], score.col_idx[:, 0], score.col_val[:, 0])
    a_best = score.argmax(axis=1)
    b_best = score.argmax(axis=0)
    return ManyToOne(a_best, score[np.arange(score.shape[0]), a_best].astype(np.float32),
                     b_best, score[b_best, np.arange(score.shape[1])].astype(np.float32))


THRESHOLDS = np.round(np.arange(0.0, 1.0001, 0.05), 2)


def coverage_curve(scores: np.ndarray, n_latents: int, thresholds: np.ndarray = THRESHOLDS) -> list[dict]:
    """Fraction of `n_latents` whose partner scores at least t, for each threshold t.

    scores: float [n_pairs] (e.g. one-to-one pair scores of the smaller dictionary).
    """
    s = np.sort(np.asarray(scores, np.float64))
    counts = s.size - np.searchsorted(s, thresholds, side="left")
    return [{"threshold": float(t), "fraction": float(c) / max(n_latents, 1), "count": int(c)}
            for t, c in zip(thresholds, counts)]


def random_rotation(d: int, seed: int) -> np.ndarray:
    """float32 [d, d]: a Haar-random orthogonal matrix (QR of a Gaussian, signs fixed)."""
    g = torch.from_numpy(np.random.default_rng(seed).standard_normal((d, d)))
    q, r = torch.linalg.qr(g)  # torch, not numpy: OpenBLAS threads spin against torch's on 2 busy cores
    return (q * torch.sign(torch.diagonal(r))[None, :]).float().numpy()


def chance_level(null_scores: np.ndarray, quantile: float = 0.99) -> float:
    """The score that pairs under the null (rotated decoders / shuffled windows) reach at `quantile`."""
    return float(np.quantile(null_scores, quantile)) if null_scores.size else 0.0
