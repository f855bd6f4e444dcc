"""The reader's answers equal brute-force dense computations on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saelab.activations import ActivationReader
from saelab.errors import ArtifactError, ConfigError
from saelab.latents import LatentStore, run
from saelab.workspace import Workspace

from .fixtures import tiny_coders, tiny_lm, tiny_windows
from .worker import CONFIG


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    lm, windows, coders = tiny_lm(), tiny_windows(), tiny_coders()
    paths = run(CONFIG, ws, lm, windows, coders, progress=False)
    return ws, lm, windows, coders, paths


def brute_force(lm, windows, coder) -> np.ndarray:
    """float32 [n_windows, ctx, d_sae]: every latent at every position, zero where excluded."""
    reader = ActivationReader(lm.model, [coder.cfg.hookpoint])
    acts = reader(windows.tokens.long())[coder.cfg.hookpoint]  # [n_windows, ctx, d_in]
    with torch.no_grad():
        dense = coder.encode(acts.reshape(-1, acts.shape[-1])).to(torch.float16).float()
    dense = dense.view(*acts.shape[:2], -1) * windows.text_mask()[..., None]
    return dense.numpy()


@pytest.fixture(scope="module", params=["sae_l1", "sae_l2"])
def case(request, cached):
    _, lm, windows, coders, paths = cached
    return LatentStore(paths[request.param]), brute_force(lm, windows, coders[request.param]), windows


def test_frequencies_and_maxima(case):
    store, dense, windows = case
    fires = dense > 0
    n_text = int(windows.text_mask().sum())
    freq = store.frequencies()
    assert (freq.n_tokens, freq.n_windows) == (n_text, windows.n_windows)
    np.testing.assert_allclose(freq.per_token, fires.sum((0, 1)) / n_text)
    np.testing.assert_allclose(freq.per_window, fires.any(1).sum(0) / windows.n_windows)
    np.testing.assert_allclose(store.max_activations(), dense.max((0, 1)), rtol=2e-3)
    assert store.summary()["mean_l0"] == pytest.approx(fires.sum() / n_text)


def test_top_k_and_window_maxima(case):
    store, dense, _ = case
    win_max = dense.max(1)  # [n_windows, d_sae]
    for latent in range(store.d_sae):
        m = store.window_maxima(latent)
        np.testing.assert_array_equal(m.windows, np.flatnonzero(win_max[:, latent] > 0))
        np.testing.assert_allclose(m.values, win_max[m.windows, latent], rtol=2e-3)
        np.testing.assert_array_equal(m.positions, dense[m.windows, :, latent].argmax(1))
        top = store.top_k(latent, k=3)
        want = np.sort(win_max[:, latent])[::-1][: top.windows.size]
        np.testing.assert_allclose(top.values, want, rtol=2e-3)
        assert top.windows.size == min(3, m.windows.size)


def test_quantiles_and_non_activating(case):
    store, dense, _ = case
    win_max = dense.max(1)
    latent = int(np.argmax((win_max > 0).sum(0)))  # the most frequent latent
    groups = store.quantile_sample(latent, n_quantiles=4, per_quantile=2, seed=1)
    assert len(groups) == 4 and all(g.windows.size == 2 for g in groups)
    for lower, upper in zip(groups, groups[1:]):
        assert lower.values.max() <= upper.values.min()
    for g in groups:
        np.testing.assert_allclose(g.values, win_max[g.windows, latent], rtol=2e-3)
    rare = int(np.argmin(np.where((win_max > 0).sum(0) > 0, (win_max > 0).sum(0), 10**9)))
    silent = store.non_activating(rare, n=5, seed=0)
    assert silent.size == 5 and (win_max[silent, rare] == 0).all()


def test_window_latents_and_dense(case):
    store, dense, windows = case
    for window in (0, 5, windows.n_windows - 1):
        e = store.window_latents(window)
        pos, lat = np.nonzero(dense[window])
        np.testing.assert_array_equal(e.positions, pos)
        np.testing.assert_array_equal(e.latents, lat)
        np.testing.assert_allclose(e.values, dense[window][pos, lat], rtol=2e-3)
        for latent in (0, 7, store.d_sae - 1):
            np.testing.assert_allclose(store.dense(latent, window), dense[window, :, latent], rtol=2e-3)


def test_iter_csr_equals_dense(case):
    store, dense, _ = case
    blocks = [m.matrix.toarray() for m in store.iter_csr()]
    assert [m.window_start for m in store.iter_csr()] == [s.window_start for s in store.shards]
    np.testing.assert_allclose(np.concatenate(blocks), dense.reshape(-1, store.d_sae), rtol=2e-3)


def test_excluded_positions_are_not_stored(case):
    store, _, windows = case
    mask = windows.text_mask()
    for latent in range(store.d_sae):
        e = store.activations(latent)
        assert mask[e.windows, e.positions].all()
    assert store.cfg["excluded"] == ["sink", "special"] and "not stored" in store.cfg["excluded_note"]


def test_bad_arguments_are_named(case):
    store, _, windows = case
    with pytest.raises(ConfigError, match="latent"):
        store.top_k(store.d_sae, k=1)
    with pytest.raises(ConfigError, match="window"):
        store.window_latents(windows.n_windows)


def test_missing_store_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="saelab cache"):
        LatentStore(tmp_path / "nothing")
