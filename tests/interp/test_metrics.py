"""Per-latent comparisons: the summary's "measurably above chance" is a paired test over latents."""

from __future__ import annotations

import pytest

from saelab.interp.metrics import classification_pooled, compare


def _records(pairs):
    return [{"label": y, "prediction": int(p >= 0.5), "probability": p, "failed": False} for y, p in pairs]


def test_macro_auc_is_not_dragged_by_a_judge_that_favours_one_explanation():
    # each latent is ranked perfectly, but the judge says yes far more readily to latent 1's explanation
    per = {0: _records([(1, 0.3), (1, 0.25), (0, 0.1), (0, 0.05)]),
           1: _records([(1, 0.99), (1, 0.95), (0, 0.9), (0, 0.85)])}
    p = classification_pooled(per)
    assert p["mean_latent_auc"] == pytest.approx(1.0) and p["n_latents_auc"] == 2
    assert p["auc"] < 0.8  # micro: latent 1's negatives outrank latent 0's positives


def test_a_consistent_gain_is_measurably_above_and_no_gain_is_not():
    ref = {str(l): 0.5 + 0.01 * (l % 3) for l in range(20)}
    better = {l: v + 0.05 + 0.01 * (int(l) % 2) for l, v in ref.items()}
    c = compare(better, ref, seed=1)
    assert c["n_latents"] == 20 and c["difference"] == pytest.approx(0.055)
    assert 0 < c["ci_low"] <= 0.055 <= c["ci_high"] and c["above"] and c["p_one_sided"] < 1e-3
    same = compare(ref, ref)
    assert same["difference"] == 0 and not same["above"] and same["p_one_sided"] == 1.0


def test_noise_around_zero_is_not_called_above():
    import numpy as np

    rng = np.random.default_rng(0)
    ref = {str(l): 0.5 for l in range(20)}
    noisy = {l: 0.5 + float(d) for l, d in zip(ref, rng.normal(0, 0.05, 20) - 0.0)}
    noisy = {l: v - (np.mean(list(noisy.values())) - 0.5) for l, v in noisy.items()}  # mean difference exactly 0
    c = compare(noisy, ref, seed=0)
    assert c["ci_low"] < 0 < c["ci_high"] and not c["above"] and c["p_one_sided"] > 0.2


def test_latents_missing_on_either_side_are_left_out_and_too_few_give_none():
    c = compare({"1": 0.9, "2": 0.8, "3": None, "4": 0.7, "5": 0.6}, {"1": 0.5, "2": 0.5, "3": 0.5, "4": 0.5})
    assert c["n_latents"] == 3 and c["difference"] > 0.2 and c["above"] is None  # too few latents for a verdict
    assert compare({"1": 0.9, "2": 0.8}, {"1": 0.5, "2": 0.5}) is None
