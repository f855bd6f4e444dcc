"""Layer sweep: finds the one layer whose weights changed; KL per token; save/load round-trip."""

import math

import numpy as np
import pytest
import torch

from saelab.diff.pair import paired_windows, valid_mask
from saelab.diff.sweep import SweepResult, _cka, layer_sweep
from saelab.errors import ArtifactError
from tests.diff._models import CATEGORIES, corpus_windows, perturbed, tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base():
    return tiny_llama()


@pytest.fixture(scope="module")
def windows(base):
    return paired_windows(corpus_windows(base.tokenizer), base.tokenizer, CATEGORIES)


@pytest.mark.parametrize("changed", [1, 2, 3])
def test_sweep_finds_the_layer_whose_weights_differ(base, windows, changed):
    s = layer_sweep(base, perturbed(base, changed), windows, batch_size=8, progress=False)
    assert s.changed_layer == changed
    assert s.layers == [0, 1, 2, 3]
    for i in range(changed):  # upstream of the change the activations are identical
        assert s.rel_norm[i] == 0 and s.cosine[i] == pytest.approx(1) and s.cka[i] == pytest.approx(1)
    assert s.rel_norm[changed] > 0.1 and s.cosine[changed] < 0.99 and s.cka[changed] < 0.99
    assert s.kl_mean > 0 and all(v > 0 for v in s.kl_by_group.values())


def test_identical_models_do_not_diverge(base, windows):
    s = layer_sweep(base, base, windows, [1, 3], progress=False)
    assert s.rel_norm == [0, 0] and s.cka == pytest.approx([1, 1]) and s.kl_mean == pytest.approx(0, abs=1e-6)


def test_kl_per_token_groups_and_top_tokens(base, windows):
    s = layer_sweep(base, perturbed(base, 2, scale=0.3), windows, top_k=5, progress=False)
    valid = valid_mask(windows).numpy()
    assert s.kl.shape == tuple(windows.tokens.shape)
    assert np.isnan(s.kl[~valid]).all() and np.isfinite(s.kl[valid]).all() and (s.kl[valid] >= 0).all()
    assert s.groups == ["corpus", "politics", "arts"] and set(s.kl_by_group) == set(s.groups)
    assert s.n_tokens == valid.sum()
    n_corpus = windows.cfg["n_corpus_windows"]
    assert s.kl_by_group["corpus"] == pytest.approx(float(np.nanmean(s.kl[:n_corpus])), rel=1e-5)
    kls = [t["kl"] for t in s.top_kl]
    assert len(kls) == 5 and kls == sorted(kls, reverse=True) and kls[0] == pytest.approx(float(np.nanmax(s.kl)))
    top = s.top_kl[0]
    assert top["context"] and top["token"] and {"base_next", "target_next", "group", "window", "pos"} <= set(top)
    assert set(s.rel_norm_by_group) == set(s.groups)


def test_kl_direction_is_target_relative_to_base():
    from saelab.diff.sweep import _kl

    p_t, p_b = torch.tensor([[[0.9, 0.1]]]).log(), torch.tensor([[[0.5, 0.5]]]).log()
    kl, _, _ = _kl(p_t, p_b)
    assert kl.item() == pytest.approx(0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5), rel=1e-5)


def test_cka_debiased_and_plain():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 20, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64))
    assert _cka(x, 3 * x @ q) == pytest.approx((1, 1), abs=1e-6)  # invariant to rotation and scale
    debiased, plain = _cka(x, torch.randn(300, 20, generator=g, dtype=torch.float64))
    assert abs(debiased) < 0.05 < plain  # plain CKA of independent data is biased upwards


def test_save_load_round_trip(base, windows, tmp_path):
    s = layer_sweep(base, perturbed(base, 1), windows, progress=False)
    s.save(tmp_path)
    back = SweepResult.load(tmp_path)
    np.testing.assert_array_equal(back.kl, s.kl)
    for field in ("layers", "rel_norm", "cka", "cka_plain", "cosine", "increment", "changed_layer", "kl_by_group",
                  "top_kl", "rel_norm_by_group", "notes"):
        assert getattr(back, field) == getattr(s, field), field
    assert back.layer_table()[1]["layer"] == 1
    with pytest.raises(ArtifactError, match="no layer sweep"):
        SweepResult.load(tmp_path / "missing")


def test_cutting_the_right_padding_off_leaves_every_number(base, windows, monkeypatch):
    import saelab.diff.sweep as sweep

    n_corpus = windows.cfg["n_corpus_windows"]
    assert n_corpus % 4 == 0 and sweep._cut_length(valid_mask(windows)[n_corpus:]) < windows.ctx_len  # cut
    target = perturbed(base, 2, scale=0.3)
    cut = layer_sweep(base, target, windows, batch_size=4, top_k=5, progress=False)
    monkeypatch.setattr(sweep, "CUT_MAX", 0)  # every batch whole
    whole = layer_sweep(base, target, windows, batch_size=4, top_k=5, progress=False)
    np.testing.assert_array_equal(np.isnan(cut.kl), np.isnan(whole.kl))
    np.testing.assert_allclose(cut.kl, whole.kl, rtol=1e-5, atol=1e-7)
    for field in ("rel_norm", "cosine", "cka", "cka_plain", "kl_mean"):
        assert getattr(cut, field) == pytest.approx(getattr(whole, field), rel=1e-5, abs=1e-7), field
    assert cut.kl_by_group == pytest.approx(whole.kl_by_group, rel=1e-5)
    assert [(t["window"], t["pos"], t["target_next"]) for t in cut.top_kl] == \
        [(t["window"], t["pos"], t["target_next"]) for t in whole.top_kl]
    assert (cut.n_tokens, cut.n_cka_tokens, cut.changed_layer) == (whole.n_tokens, whole.n_cka_tokens,
                                                                   whole.changed_layer)
