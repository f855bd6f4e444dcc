"""Index widths that hold at scale: every sparse build past 2³¹ − 1 entries (or counts) is int64.

A sparse structure of 2³¹ entries takes > 17 GB, so these tests check the choice at that size and
one real wrap-around a cheap input can reach: pair counts past 2³¹ − 1 (a token-level count of
> 2.1 billion tokens)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from saelab.cooc.counts import CoocCounts, add_pairs, count_dtype, pair_matrix, with_index_dtype
from saelab.latents.shard import index_dtype

LIMIT = 2**31 - 1


def test_index_dtype_is_int32_up_to_the_limit_and_int64_past_it():
    assert index_dtype(0) == np.int32 and index_dtype(LIMIT) == np.int32
    assert index_dtype(LIMIT + 1) == np.int64 and index_dtype(2**31 + 5) == np.int64
    assert count_dtype(2**31 + 5) == np.int64 and count_dtype(10**6) == np.int32


def test_pair_counts_past_the_int32_limit_do_not_wrap(tmp_path):
    n = 2**31 + 5  # windows (token level: text tokens)
    a = pair_matrix(np.array([LIMIT - 1], np.int32), np.array([2]), np.array([0, 1, 1, 1]), 3)
    b = pair_matrix(np.array([4], np.int32), np.array([2]), np.array([0, 1, 1, 1]), 3)
    total = add_pairs(a, b, count_dtype(n))
    assert total.dtype == np.int64 and int(total[0, 2]) == LIMIT + 3  # int32 would give a negative count
    counts = CoocCounts(n, np.array([LIMIT + 3, 0, LIMIT + 3], np.int64), total)
    back = CoocCounts.load(counts.save(tmp_path).parent)
    assert back.pairs.dtype == np.int64 and int(back.pairs[0, 2]) == LIMIT + 3


def test_a_forced_int64_index_survives_scipy_sums(monkeypatch):
    """scipy's constructor narrows int64 indices whose values fit in int32; `with_index_dtype` sets them after,
    and add_pairs keeps the width its operands could need even where scipy's sum narrows them again (it does,
    in some processes: after a latent cache had run in the same test session). The width is forced here, as
    a.nnz + b.nnz past 2³¹ − 1 would choose it."""
    from saelab.cooc import counts

    m = sp.csr_matrix((np.ones(2, np.int32), np.array([1, 2], np.int64), np.array([0, 2, 2, 2], np.int64)),
                      shape=(3, 3))
    assert m.indptr.dtype == np.int32  # what scipy chose
    wide = with_index_dtype(m, np.dtype(np.int64))
    assert wide.indptr.dtype == wide.indices.dtype == np.int64
    monkeypatch.setattr(counts, "index_dtype", lambda n: np.dtype(np.int64))
    total = add_pairs(wide, wide.copy(), np.dtype(np.int64))
    assert total.indptr.dtype == total.indices.dtype == np.int64 and int(total[0, 2]) == 2
