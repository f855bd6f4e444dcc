"""Co-occurrence: windows cut inside documents, φ by hand, sparse counts = SFAL's dense method."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.cooc import CoocConfig, count, load_cooc, phi, run
from saelab.cooc.metrics import jaccard, npmi
from saelab.cooc.synthetic import write_workspace, zipf_entries
from saelab.cooc.windows import build_window_map
from saelab.data.tokens import load_token_windows
from saelab.errors import ConfigError
from saelab.latents.store import LatentStore

CTX, D = 16, 40


def dense_reference(doc: np.ndarray, entries: np.ndarray, d: int, k: int, stride: int, keep: bool,
                    n_positions: int | None = None) -> tuple[np.ndarray, int]:
    """SFAL's method, written independently: per document, windows of k tokens every `stride`
    (full ones only unless keep), one outer product per window into a dense d×d histogram."""
    flat = doc.reshape(-1)[:n_positions]
    acts = np.zeros((flat.size, d), bool)  # [positions, d]
    e = entries[entries[:, 0] * CTX + entries[:, 1] < flat.size]
    acts[e[:, 0] * CTX + e[:, 1], e[:, 2]] = True
    hist, n = np.zeros((d, d), np.int64), 0
    bounds = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        s = 0
        while s < b - a:
            if s + k > b - a and (not keep or (s > 0 and s - stride + k >= b - a)):
                break
            f = acts[a + s : min(a + s + k, b)].any(axis=0)
            hist += np.outer(f, f)
            n += 1
            s += stride
    return hist, n


@pytest.fixture
def synthetic(tmp_path):
    doc, entries = zipf_entries(n_windows=24, ctx_len=CTX, d_sae=D, l0=3, doc_len=40, topic_size=5, seed=1)
    tokens = np.random.default_rng(0).integers(3, 50, size=doc.shape)
    ws = write_workspace(tmp_path, tokens, doc, entries, D, shard_windows=5)  # documents cross shards
    return ws, doc, entries


@pytest.fixture(params=["gemm", "sparse"])
def product(request, monkeypatch):
    """Each chunk's BᵀB by the tiled GEMM, or by scipy's sparse product (what wide dictionaries take)."""
    import saelab.cooc.counts as counts

    monkeypatch.setattr(counts, "SPARSE_PRODUCT_ADVANTAGE", float("inf") if request.param == "gemm" else 0.0)
    return request.param


def test_phi_jaccard_npmi_by_hand():
    # 4 windows: i fires in 3, j in 2, both in 2 → n00 = 1, n10 = 1, n01 = 0
    assert phi(2, 3, 2, 4) == pytest.approx((2 * 1 - 1 * 0) / np.sqrt(3 * 1 * 2 * 2))
    assert jaccard(2, 3, 2, 4) == pytest.approx(2 / 3)
    assert npmi(2, 3, 2, 4) == pytest.approx(np.log(0.5 / (0.75 * 0.5)) / -np.log(0.5))
    assert phi(0, 2, 2, 4) == pytest.approx(-1.0)  # never together, each in half: perfectly anti-correlated
    assert phi(3, 3, 3, 3) == 0.0  # fires everywhere: undefined, 0 (SFAL's convention)
    assert npmi(0, 1, 1, 4) == -1.0


def test_windows_are_cut_inside_documents():
    doc = np.repeat([0, 1, 2], [5, 3, 8]).reshape(1, 16)
    drop = build_window_map(doc, CoocConfig(k=4))
    assert drop.n_windows == 1 + 0 + 2
    assert drop.counts["documents_shorter_than_k"] == 1 and drop.counts["tokens_not_in_any_window"] == 1 + 3
    assert build_window_map(doc, CoocConfig(k=4, partial="keep")).n_windows == 2 + 1 + 2
    sliding = build_window_map(doc, CoocConfig(k=4, window="sliding", stride=2))
    assert sliding.n_windows == 1 + 0 + 3
    assert list(zip(sliding.lo[8:16], sliding.hi[8:16])) == [(1, 2), (1, 2), (1, 3), (1, 3),
                                                             (2, 4), (2, 4), (3, 4), (3, 4)]
    with pytest.raises(ConfigError, match="longest document has 8 tokens"):
        build_window_map(doc, CoocConfig(k=9))


@pytest.mark.parametrize("config", [CoocConfig(k=8), CoocConfig(k=8, partial="keep"),
                                    CoocConfig(k=8, window="sliding", stride=3), CoocConfig(k=5, n_tokens=200),
                                    CoocConfig(k=8, chunk_windows=2)])
def test_sparse_counts_equal_the_dense_outer_product_method(synthetic, config, product):
    ws, doc, entries = synthetic
    counts, _ = count(config, LatentStore(ws.latents("synth")), load_token_windows(ws.tokens))
    hist, n = dense_reference(doc, entries, D, config.k, config.effective_stride, config.partial == "keep",
                              config.n_tokens)
    assert counts.n_windows == n
    np.testing.assert_array_equal(counts.dense(), hist)


def test_n_docs_uses_the_first_documents(synthetic):
    ws, doc, entries = synthetic
    counts, skipped = count(CoocConfig(k=6, n_docs=3), LatentStore(ws.latents("synth")), load_token_windows(ws.tokens))
    first_of_fourth = int(np.flatnonzero(np.r_[True, doc.reshape(-1)[1:] != doc.reshape(-1)[:-1]])[3])
    hist, n = dense_reference(doc, entries, D, 6, 6, False, first_of_fourth)
    assert skipped["documents"] == 3 and counts.n_windows == n
    np.testing.assert_array_equal(counts.dense(), hist)


def test_token_level_counts_every_text_token(synthetic, product):
    ws, doc, entries = synthetic
    counts, _ = count(CoocConfig(level="token"), LatentStore(ws.latents("synth")), load_token_windows(ws.tokens))
    acts = np.zeros((doc.size, D), np.int64)
    acts[entries[:, 0] * CTX + entries[:, 1], entries[:, 2]] = 1
    assert counts.n_windows == doc.size
    np.testing.assert_array_equal(counts.dense(), acts.T @ acts)


def test_run_writes_counts_and_neighbours(synthetic):
    ws, doc, entries = synthetic
    cooc = run(CoocConfig(k=8, top_k=5), ws, "synth")
    again = load_cooc(cooc.path)
    c = again.counts.dense()
    assert again.cfg["n_windows"] == again.counts.n_windows == cooc.counts.n_windows
    assert again.cfg["n_dead"] == int((np.diag(c) == 0).sum())
    latent = int(np.argmax(np.diag(c)))
    scores = phi(c[latent], c[latent, latent], np.diag(c), again.counts.n_windows)
    partners = np.flatnonzero((c[latent] > 0) & (np.arange(D) != latent))
    expected = partners[np.lexsort((partners, -scores[partners]))][:5]
    got, values = again.neighbours(latent, "phi")
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(values, scores[expected], rtol=1e-6)


def test_a_rerun_reads_counts_back_other_settings_are_refused_and_an_interrupted_run_counts_again(synthetic,
                                                                                                 monkeypatch):
    from saelab.errors import ArtifactError

    ws, _, _ = synthetic
    first = run(CoocConfig(k=8, top_k=5), ws, "synth")
    stamp = (first.path / "counts.safetensors").stat().st_mtime_ns
    again = run(CoocConfig(k=8, top_k=5), ws, "synth")  # the same settings and store: read back, not recounted
    assert (again.path / "counts.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ArtifactError, match=r"config.k: 8 → 4.*--overwrite"):
        run(CoocConfig(k=4, top_k=5), ws, "synth")
    assert load_cooc(first.path).cfg["config"]["k"] == 8  # nothing touched
    assert run(CoocConfig(k=4, top_k=5), ws, "synth", overwrite=True).cfg["config"]["k"] == 4

    import importlib

    cooc_run = importlib.import_module("saelab.cooc.run")  # the module (the package's `run` is the function)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cooc_run, "write_neighbours", interrupted)  # Ctrl-C after the counts, before cfg.json
    with pytest.raises(KeyboardInterrupt):
        run(CoocConfig(k=6, top_k=5), ws, "synth", overwrite=True)
    with pytest.raises(ArtifactError, match="cfg.json missing"):
        load_cooc(first.path)  # half-written: not readable as counts
    assert not list((ws.root / ".locks").rglob("*.lock"))  # the lock went with the interrupted run
    monkeypatch.undo()
    assert run(CoocConfig(k=6, top_k=5), ws, "synth").cfg["config"]["k"] == 6  # counted again, no --overwrite


def test_pair_sum_equals_adding_the_chunks_one_by_one():
    """`PairSum` re-adds partial sums in a binary-counter pattern; its total is the plain sum of the chunks,
    whatever their number and sizes (here 37 chunks of 1 to 60 stored pairs)."""
    import scipy.sparse as sp

    from saelab.cooc.counts import PairSum, add_pairs

    rng, d, dtype = np.random.default_rng(3), 50, np.dtype(np.int32)
    chunks = [sp.random(d, d, density=rng.uniform(0.0004, 0.024), format="csr", random_state=i,
                        data_rvs=lambda n: rng.integers(1, 9, n)).astype(np.int32) for i in range(37)]
    running, plain = PairSum(d, dtype), sp.csr_matrix((d, d), dtype=dtype)
    for c in chunks:
        running.add(c)
        plain = add_pairs(plain, c, dtype)
        assert len(running.parts) <= int(np.log2(sum(m.nnz for m in chunks) + 2)) + 1
    np.testing.assert_array_equal(running.total().toarray(), plain.toarray())
