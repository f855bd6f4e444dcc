"""All-pairs scores that are never held whole: each row's and each column's k best entries.

Above `MatchConfig.dense_limit` entries (n_a · n_b), a match keeps a `TopK` instead of the
dense [n_a, n_b] matrix: a 131,072 × 16,384 float32 matrix is 8.6 GB, its top-32 candidates
per row and per column are (131,072 + 16,384) · 32 · 12 B ≈ 60 MB. Blocks of rows are scored
one at a time (block · n_b floats) and folded into a `TopKAccumulator`.

What is exact from a `TopK`: every row's and column's best partner and score (many-to-one),
the k nearest partners of any latent (families, the per-latent prefilter). What is not: a
pair outside both candidate lists is not stored (its score is below the k-th best of its row
and of its column), so the one-to-one assignment is solved on the candidate graph
(`assignment.hungarian_sparse`), which equals the dense optimum whenever that optimum uses
only candidate pairs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch


class TopK(NamedTuple):
    """The k largest entries of every row and every column of a score matrix [n_a, n_b]."""

    row_idx: np.ndarray
    """int64 [n_a, k]: columns, largest score first"""
    row_val: np.ndarray
    """float32 [n_a, k]"""
    col_idx: np.ndarray
    """int64 [n_b, k]: rows, largest score first"""
    col_val: np.ndarray
    """float32 [n_b, k]"""
    shape: tuple[int, int]
    """(n_a, n_b) of the matrix these came from"""

    @property
    def T(self) -> "TopK":  # noqa: N802 (the matrix's name for it)
        """The same candidates seen from the columns."""
        return TopK(self.col_idx, self.col_val, self.row_idx, self.row_val, (self.shape[1], self.shape[0]))

    def entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, values) of every candidate pair, each pair once, sorted by (row, col)."""
        n_a, n_b = self.shape
        rows = np.concatenate([np.repeat(np.arange(n_a), self.row_idx.shape[1]), self.col_idx.ravel()])
        cols = np.concatenate([self.row_idx.ravel(), np.repeat(np.arange(n_b), self.col_idx.shape[1])])
        vals = np.concatenate([self.row_val.ravel(), self.col_val.ravel()])
        key, first = np.unique(rows * n_b + cols, return_index=True)  # a pair in both lists has one value
        return key // n_b, key % n_b, vals[first]

    def graph(self) -> sp.csr_matrix:
        """float32 [n_a, n_b] CSR of the candidate pairs (explicit entries, zeros and negatives kept)."""
        r, c, v = self.entries()
        return sp.csr_matrix((v, (r, c)), shape=self.shape)

    def lookup(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """float32 [n]: the score of each pair (rows[i], cols[i]) that is a candidate, NaN where it is not."""
        r, c, v = self.entries()
        key = r * self.shape[1] + c
        want = np.asarray(rows, np.int64) * self.shape[1] + np.asarray(cols, np.int64)
        out = np.full(want.shape, np.nan, np.float32)
        if key.size:
            at = np.minimum(np.searchsorted(key, want), key.size - 1)
            hit = key[at] == want
            out[hit] = v[at[hit]]
        return out

    def row(self, i: int) -> np.ndarray:
        """float32 [n_b]: row i with its candidates (from both lists) filled in and NaN elsewhere."""
        out = np.full(self.shape[1], np.nan, np.float32)
        in_col = np.nonzero((self.col_idx == i).any(axis=1))[0]  # columns that list i among their best
        out[in_col] = self.col_val[in_col][self.col_idx[in_col] == i]
        out[self.row_idx[i]] = self.row_val[i]
        return out


class TopKAccumulator:
    """Folds row blocks of a score matrix [n_a, n_b] into each row's and column's top k."""

    def __init__(self, n_a: int, n_b: int, k: int) -> None:
        self.n_a, self.n_b = n_a, n_b
        self.k_row, self.k_col = min(k, n_b), min(k, n_a)
        self.row_idx = np.zeros((n_a, self.k_row), np.int64)
        self.row_val = np.zeros((n_a, self.k_row), np.float32)
        self.col_val = torch.full((0, n_b), -torch.inf)  # [≤ k, n_b], not sorted until `result`
        self.col_idx = torch.zeros((0, n_b), dtype=torch.int64)

    def add(self, lo: int, block: torch.Tensor) -> None:
        """block: float32 [rows, n_b], the rows lo … lo + rows of the matrix."""
        v, i = torch.topk(block, self.k_row, dim=1)  # [rows, k], largest first
        self.row_val[lo : lo + block.shape[0]], self.row_idx[lo : lo + block.shape[0]] = v.numpy(), i.numpy()
        kc = min(self.k_col, block.shape[0])
        cv, ci = torch.topk(block, kc, dim=0)  # [kc, n_b]
        vals, idx = torch.cat([self.col_val, cv]), torch.cat([self.col_idx, ci + lo])
        keep = min(self.k_col, vals.shape[0])
        self.col_val, at = torch.topk(vals, keep, dim=0)
        self.col_idx = torch.gather(idx, 0, at)

    def result(self) -> TopK:
        """The candidates, each column's sorted largest first (torch.topk already sorts)."""
        return TopK(self.row_idx, self.row_val, self.col_idx.T.contiguous().numpy(),
                    self.col_val.T.contiguous().numpy(), (self.n_a, self.n_b))


def top_of_dense(score: np.ndarray, k: int) -> TopK:
    """The `TopK` of a dense score [n_a, n_b] (for tests and small matrices)."""
    acc = TopKAccumulator(*score.shape, k)
    acc.add(0, torch.from_numpy(np.ascontiguousarray(score, np.float32)))
    return acc.result()
