"""Above the dense limit: top-k candidates equal the dense matrix's, the sparse assignment equals the
dense Hungarian where the dense optimum uses candidate pairs, `run` gives the demo's answer, and no
dense [n_a, n_b] array is allocated."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pyarrow.parquet as pq
import pytest

from saelab._io import read_json
from saelab.latents import LatentStore
from saelab.match import MatchConfig, activation_moments, analyse, cosine_matrix, hungarian, many_to_one, pearson, run
from saelab.match.assignment import hungarian_sparse
from saelab.match.index import MatchIndex, Side
from saelab.match.similarity import cosine_topk, pair_pearson, pearson_topk
from saelab.match.topk import top_of_dense

from .synthetic import coder

SPARSE = MatchConfig(dense_limit=1, candidates=8)


def test_cosine_topk_holds_each_rows_and_columns_largest_entries():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((97, 24)), rng.standard_normal((41, 24))
    dense = cosine_matrix(a, b)
    top = cosine_topk(a, b, k=5, block=16)
    np.testing.assert_allclose(top.row_val, -np.sort(-dense, axis=1)[:, :5], atol=1e-6)
    np.testing.assert_allclose(top.col_val, -np.sort(-dense, axis=0)[:5].T, atol=1e-6)
    np.testing.assert_allclose(dense[np.arange(97)[:, None], top.row_idx], top.row_val, atol=1e-6)
    dense_best, sparse_best = many_to_one(dense), many_to_one(top)
    np.testing.assert_array_equal(dense_best.a_best, sparse_best.a_best)
    np.testing.assert_array_equal(dense_best.b_best, sparse_best.b_best)
    r, c, v = top.entries()
    np.testing.assert_allclose(v, dense[r, c], atol=1e-6)
    np.testing.assert_allclose(top.lookup(r, c), v)
    assert np.isnan(top.row(0)).sum() == 41 - np.unique(c[r == 0]).size


@pytest.mark.parametrize("shape", [(40, 300), (300, 40), (64, 64)])
def test_sparse_assignment_equals_dense_where_the_optimum_uses_candidates(shape):
    rng = np.random.default_rng(sum(shape))
    n = min(shape)
    score = 0.5 * rng.random(shape).astype(np.float32)
    rows, cols = rng.permutation(shape[0])[:n], rng.permutation(shape[1])[:n]
    score[rows, cols] += 0.4 + 0.2 * rng.random(n).astype(np.float32)  # a planted, not quite obvious optimum
    dense = hungarian(score)
    top = top_of_dense(score, k=6)
    graph = top.graph()
    assert all(graph[i, j] != 0 for i, j in zip(dense.a, dense.b))  # the precondition of exactness holds
    sparse = hungarian_sparse(top)
    np.testing.assert_array_equal(sparse.a, dense.a)
    np.testing.assert_array_equal(sparse.b, dense.b)
    np.testing.assert_allclose(sparse.score, dense.score)


def test_sparse_assignment_on_the_full_graph_is_the_dense_optimum():
    rng = np.random.default_rng(3)
    score = rng.standard_normal((30, 45)).astype(np.float32)
    sparse = hungarian_sparse(top_of_dense(score, k=45))
    assert sparse.score.sum() == pytest.approx(hungarian(score).score.sum(), rel=1e-6)
    assert sparse.a.size == 30 and np.unique(sparse.b).size == 30


def test_a_latent_without_a_free_candidate_stays_unpaired():
    score = np.full((3, 50), -0.5, np.float32)
    score[0] = -0.4  # every column's only candidate (k = 1) is row 0 ...
    score[:, 0] = [1.0, 0.9, 0.8]  # ... and every row's is column 0
    pairs = hungarian_sparse(top_of_dense(score, k=1))
    assert pairs.a.tolist() == [0, 1] and pairs.b[1] == 0 and pairs.b[0] != 0  # row 2 has no free candidate


def test_pearson_topk_and_pair_pearson_equal_the_dense_correlation(ws):
    a, b = LatentStore(ws.latents("narrow")), LatentStore(ws.latents("wide"))
    dense = pearson(activation_moments(a, b))  # [12, 17]
    top = pearson_topk(a, b, k=4, block=5)
    np.testing.assert_allclose(top.row_val, -np.sort(-dense, axis=1)[:, :4], atol=1e-6)
    np.testing.assert_allclose(top.col_val, -np.sort(-dense, axis=0)[:4].T, atol=1e-6)
    rows, cols = np.repeat(np.arange(12), 17), np.tile(np.arange(17), 12)
    np.testing.assert_allclose(pair_pearson(a, b, rows, cols), dense.ravel(), atol=1e-5)
    shuffled = pearson(activation_moments(a, b, shuffle_seed=3))
    np.testing.assert_allclose(pearson_topk(a, b, k=4, block=5, shuffle_seed=3).row_val,
                               -np.sort(-shuffled, axis=1)[:, :4], atol=1e-6)


def test_run_above_the_dense_limit_gives_the_dense_answer(ws, tmp_path):
    dense = run(MatchConfig(), ws, "wide", "narrow", out_dir=tmp_path / "dense")
    sparse = run(SPARSE, ws, "wide", "narrow", out_dir=tmp_path / "sparse")
    cd, cs = read_json(dense / "cfg.json"), read_json(sparse / "cfg.json")
    assert cs["headline"] == cd["headline"] and cs["counts"] == cd["counts"]
    assert read_json(sparse / "families.json")["families"] == read_json(dense / "families.json")["families"]
    td, ts = pq.read_table(dense / "latents.parquet").to_pandas(), pq.read_table(sparse / "latents.parquet").to_pandas()
    assert (td["class"] == ts["class"]).all() and (td["best_partner"] == ts["best_partner"]).all()
    md, ms = pq.read_table(dense / "matches.parquet").to_pandas(), pq.read_table(sparse / "matches.parquet").to_pandas()
    one_d, one_s = md[md.one_to_one & md.above_chance], ms[ms.one_to_one & ms.above_chance]
    assert one_d[["latent_a", "latent_b"]].values.tolist() == one_s[["latent_a", "latent_b"]].values.tolist()
    np.testing.assert_allclose(ms.activation_correlation, md.activation_correlation, atol=1e-3)  # float16 vs exact


def _side(name: str, n: int, d: int, seed: int) -> Side:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, d)).astype(np.float32)
    return Side(name, coder(w / np.linalg.norm(w, axis=1, keepdims=True)), None)


def test_no_dense_pair_matrix_is_built_above_the_dense_limit():
    n_a, n_b = 3000, 1000
    a, b = _side("a", n_a, 32, 0), _side("b", n_b, 32, 1)
    index = MatchIndex.compute(a, b, config=SPARSE)
    config = MatchConfig(dense_limit=100_000, candidates=8, block_size=64)
    tracemalloc.start()
    analysis = analyse(index, config)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < n_a * n_b * 4 / 2, f"peak {peak / 1e6:.1f} MB: a dense {n_a}×{n_b} float32 is {n_a * n_b * 4e-6} MB"
    assert analysis.one_to_one.a.size > 0.9 * n_b


def test_sinkhorn_above_the_dense_limit_is_refused_with_the_fix():
    index = MatchIndex.compute(_side("a", 50, 16, 0), _side("b", 40, 16, 1), config=SPARSE)
    with pytest.raises(Exception, match="dense_limit"):
        analyse(index, MatchConfig(dense_limit=100, assignment="sinkhorn"))


def test_the_per_latent_api_reads_a_saved_candidate_analysis(ws, truth):
    from saelab.match import FeatureMatcher, load_context
    from saelab.match.topk import TopK

    run(SPARSE, ws, "wide", "narrow")  # saved where FeatureMatcher looks: ws/match/wide__narrow
    matcher = FeatureMatcher(load_context("narrow", ws), "wide", SPARSE)
    assert isinstance(matcher.index.correlation, TopK)  # saved and loaded as candidates, seen from narrow
    for narrow, wide in truth.same.items():
        report = matcher.find_matches(source_feature=narrow, n_candidates=5, n_top_matches=3)
        top = report.matches[0]
        assert top.target_feature == wide and top.activation_correlation == pytest.approx(1.0, abs=1e-3)
    pair = matcher.compare_features(0, truth.same[0])
    assert pair["activation_correlation"] == pytest.approx(1.0, abs=1e-3)
