"""Top-activating tokens of every latent, in one pass over a latent store.

A latent's top-token set is the set of distinct token ids at its `k` largest activations
over the store (ties: earlier position first). Jaccard of two such sets is the seed's
"top-token overlap" (DESIGN.md §5, Matching).
"""

from __future__ import annotations

import numpy as np

from ..latents.store import LatentStore


def _top_per_column(cols: np.ndarray, vals: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest `vals` of each column (ordered by column, then value descending)."""
    order = np.lexsort((rows, -vals, cols))  # by column, largest value first, earlier row on ties
    sorted_cols = cols[order]
    first = np.searchsorted(sorted_cols, sorted_cols, side="left")  # start of each entry's column
    rank = np.arange(order.size) - first
    return order[rank < k]


def top_token_ids(store: LatentStore, tokens: np.ndarray, k: int = 20) -> np.ndarray:
    """int32 [d_sae, k]: the distinct token ids at each latent's k largest activations, −1 padded.

    tokens: int [n_windows, ctx_len], the workspace's token windows the store was cached over.
    """
    ctx = store.ctx_len
    flat_tokens = np.asarray(tokens, np.int64).reshape(-1)  # [n_windows·ctx]
    cols, vals, rows = [], [], []
    for shard in store.iter_csr():
        coo = shard.matrix.tocoo()  # rows (w − start)·ctx + p, cols latents
        keep = _top_per_column(coo.col, coo.data, coo.row, k)
        cols.append(coo.col[keep].astype(np.int64))
        vals.append(coo.data[keep])
        rows.append(coo.row[keep].astype(np.int64) + shard.window_start * ctx)
    out = np.full((store.d_sae, k), -1, np.int32)
    if not cols:
        return out
    c, v, r = np.concatenate(cols), np.concatenate(vals), np.concatenate(rows)
    keep = _top_per_column(c, v, r, k)
    c, tok = c[keep], flat_tokens[r[keep]]
    # distinct ids per latent: sort (latent, token), drop repeats, then left-align in each row
    order = np.lexsort((tok, c))
    c, tok = c[order], tok[order]
    fresh = np.ones(c.size, bool)
    fresh[1:] = (c[1:] != c[:-1]) | (tok[1:] != tok[:-1])
    c, tok = c[fresh], tok[fresh]
    slot = np.arange(c.size) - np.searchsorted(c, c, side="left")
    out[c, slot] = tok
    return out


def token_set(row: np.ndarray) -> set[int]:
    """The token ids of one row of `top_token_ids` (padding dropped)."""
    return set(int(t) for t in row[row >= 0])


def jaccard_rows(a: np.ndarray, b: np.ndarray, block: int = 8192) -> np.ndarray:
    """float32 [n]: Jaccard of the token sets in rows a[i] and b[i] (int [n, k], −1 padded, distinct
    ids per row, as `top_token_ids` writes them); 0 where both are empty. Vectorised in blocks."""
    out = np.zeros(a.shape[0], np.float32)
    for lo in range(0, a.shape[0], block):
        x, y = a[lo : lo + block], b[lo : lo + block]
        inter = ((x[:, :, None] == y[:, None, :]) & (x[:, :, None] >= 0)).sum((1, 2))  # [block]
        union = (x >= 0).sum(1) + (y >= 0).sum(1) - inter
        out[lo : lo + block] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return out


def jaccard(a: set[int], b: set[int]) -> float:
    """|a ∩ b| / |a ∪ b|; 0 when both are empty."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0
