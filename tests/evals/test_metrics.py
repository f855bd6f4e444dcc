"""Metric definitions against hand computations (DESIGN.md §5)."""

import math

import pytest
import torch

from saelab.evals import ReconstructionStats, SparsityStats


def test_fvu_zero_for_perfect_and_one_for_the_mean():
    x = torch.randn(500, 8) * torch.arange(1, 9) + 3.0
    perfect = ReconstructionStats()
    perfect.update(x, x.clone())
    assert perfect.result()["fvu"] == pytest.approx(0.0, abs=1e-12)
    mean = ReconstructionStats()
    for chunk in x.split(100):  # accumulated over batches, μ over all tokens
        mean.update(chunk, x.mean(0).expand_as(chunk))
    assert mean.result()["fvu"] == pytest.approx(1.0, abs=1e-9)
    assert mean.result()["explained_variance"] == pytest.approx(0.0, abs=1e-9)


def test_fvu_legacy_ev_mse_cos_and_bias_match_hand_computation():
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0], [-1.0, 1.0]])
    x_hat = torch.tensor([[1.0, 1.0], [2.0, 0.0], [-1.0, 2.0]])
    s = ReconstructionStats()
    s.update(x, x_hat)
    r = s.result()
    mu = x.mean(0)
    err = ((x - x_hat) ** 2).sum(-1)                      # [1, 1, 1]
    tss = ((x - mu) ** 2).sum(-1)
    assert r["fvu"] == pytest.approx(float(err.sum() / tss.sum()))
    assert r["explained_variance_legacy"] == pytest.approx(float((1 - err / tss).mean()))
    assert r["mse"] == pytest.approx(3 / 6)
    cos = torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).mean()
    assert r["cossim"] == pytest.approx(float(cos))
    assert r["relative_reconstruction_bias"] == pytest.approx(float((x_hat ** 2).sum() / (x * x_hat).sum()))
    # the legacy figure is not the same quantity as 1 − FVU
    assert not math.isclose(r["explained_variance_legacy"], r["explained_variance"])


def test_sparsity_counts_dead_dense_and_l0():
    z = torch.zeros(100, 4)
    z[:, 0] = 1.0          # fires everywhere: dense
    z[:5, 1] = 2.0         # fires on 5%
    # latents 2, 3 never fire: dead
    s = SparsityStats(4)
    s.update(z[:50])
    s.update(z[50:])
    r = s.result()
    assert r["n_tokens"] == 100 and r["n_dead"] == 2 and r["dead_fraction"] == 0.5
    assert r["dense_fraction_gt_10pct"] == 0.25 and r["dense_fraction_gt_1pct"] == 0.5
    assert r["l0"] == pytest.approx(1.05) and r["l1"] == pytest.approx(1.1)
    assert r["l0_quantiles"]["max"] == 2 and r["l0_quantiles"]["p50"] == 1
    assert sum(r["firing_frequency_log10_histogram"]["counts"]) == 2


def test_an_untrained_or_overfit_decoder_is_named():
    from saelab.evals.run import training_record
    from saelab.evals.summary import suggestions, training_line

    record = {"steps": 160, "tokens_seen": 327_680, "train_config": {"epochs": 1.0},
              "final": {"fvu": 0.15, "decoder_cos_init": 0.93, "heldout_fvu": 0.24}}
    t = training_record(record)
    assert training_line(t) == ("training: trained for 160 steps, 327,680 tokens (1 passes), decoder rows' median "
                                "cosine to their initialisation 0.93, training FVU 0.150 (last steps)")
    tips = suggestions({"reconstruction": {"fvu": 0.24}, "training": t})
    assert any("hardly left their random initialisation (median cosine 0.93)" in s for s in tips)
    assert any("over-fitting" in s for s in tips)
    moved = training_record({**record, "final": {"fvu": 0.23, "decoder_cos_init": 0.41}})
    assert not any("initialisation" in s or "over-fitting" in s
                   for s in suggestions({"reconstruction": {"fvu": 0.24}, "training": moved}))
