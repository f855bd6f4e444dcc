"""Training properties on synthetic activations with a known sparse dictionary."""

from __future__ import annotations

import json

import pytest
import torch

from saelab.train.reference import topk_forward
from saelab.train.trainer import geometric_median, lr_factor

from .fixtures import config, fit_sparse, held_out, make_sparse, spec


def heldout_fvu(coder, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    y = x if y is None else y
    with torch.no_grad():
        y_hat = coder(x).x_hat
    return float((y - y_hat).pow(2).sum() / (y - y.mean(0)).pow(2).sum())


def test_topk_learns_known_dictionary(sparse, sparse_test, tmp_path):
    trainers, _ = fit_sparse(sparse, config(), tmp_path)
    coder = trainers["sae"].coder
    log = [json.loads(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log[-1]["fvu"] < log[0]["fvu"] / 3  # the loss goes down
    assert heldout_fvu(coder, held_out(sparse_test)) < 0.15
    # the true directions are found: each has a decoder row with cosine > 0.9
    cos = torch.nn.functional.normalize(sparse.D_in, dim=-1) @ coder.W_dec.detach().T  # [n_true, d_sae]
    assert (cos.max(1).values > 0.9).float().mean() > 0.8


@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "matryoshka"])
def test_decoder_rows_stay_unit_norm(sparse, tmp_path, architecture):
    trainers, _ = fit_sparse(sparse, config(spec(architecture=architecture)), tmp_path, n_windows=64)
    norms = trainers["sae"].coder.W_dec.detach().norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)


def test_parallel_gradient_is_removed(sparse, tmp_path):
    trainers, _ = fit_sparse(sparse, config(), tmp_path, n_windows=8)
    t = trainers["sae"]
    x = held_out(sparse)[:200]
    t.optimizer.zero_grad()
    from saelab.train.objective import objective
    objective(t.coder, x, x, t.dead, 0.0, (128,)).loss.backward()
    t.before_update()
    along_rows = (t.coder.W_dec.grad * t.coder.W_dec).sum(-1)
    assert along_rows.abs().max() < 1e-6


def _kill(trainer):
    """Kill 3/4 of the latents the realistic way (positive, but never in the top k), so the
    live quarter cannot cover the 64 true directions and the residual needs the dead ones."""
    with torch.no_grad():
        trainer.coder.W_enc[:, 32:] *= 0.02


def test_auxk_revives_dead_latents(sparse, tmp_path):
    dead_after, fvu_after = {}, {}
    x = held_out(sparse)
    for alpha in (0.0, 1 / 32):
        cfg = config(auxk_alpha=alpha, dead_tokens=500)
        trainers, _ = fit_sparse(sparse, cfg, tmp_path / str(alpha), n_windows=8)  # 2 steps
        t = trainers["sae"]
        _kill(t)
        for i in range(300):
            batch = x[i * 64 % 15000 : i * 64 % 15000 + 248]
            metrics = t.step(batch, batch)
        dead_after[alpha], fvu_after[alpha] = float(t.dead.float().mean()), metrics["fvu"]
    assert dead_after[0.0] == 0.75  # without AuxK the killed latents stay dead
    assert dead_after[1 / 32] < 0.65  # AuxK brings some back ...
    assert fvu_after[1 / 32] < 0.7 * fvu_after[0.0]  # ... and they help reconstruct


def test_batchtopk_threshold_reproduces_training_l0(sparse, sparse_test, tmp_path):
    trainers, _ = fit_sparse(sparse, config(spec(architecture="batchtopk", k=4)), tmp_path)
    coder = trainers["sae"].coder
    assert float(coder.threshold) > 0
    with torch.no_grad():
        l0 = float((coder.encode(held_out(sparse_test)) > 0).sum(-1).float().mean())
    assert abs(l0 - 4) / 4 < 0.2, l0
    assert heldout_fvu(coder, held_out(sparse_test)) < 0.15


def test_matryoshka_prefix_reconstructs(sparse, sparse_test, tmp_path):
    s = spec(architecture="matryoshka", group_sizes=(16, 48, 64))
    trainers, _ = fit_sparse(sparse, config(s), tmp_path)
    coder = trainers["sae"].coder
    x = held_out(sparse_test)
    with torch.no_grad():
        z = coder.encode(x)
        prefix = z.clone()
        prefix[:, 16:] = 0
        y_prefix = coder.decode(prefix)
    first_group_fvu = float((x - y_prefix).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    assert first_group_fvu < 0.8  # the first 16 latents alone explain a good part
    assert heldout_fvu(coder, x) < 0.2


def _linear_fvu(train, test) -> float:
    """FVU of the best affine map x -> y (least squares on the training tokens)."""
    def affine(x):
        return torch.cat([x, torch.ones(len(x), 1)], 1)
    A = torch.linalg.lstsq(affine(held_out(train, "x")), held_out(train, "y")).solution
    x, y = held_out(test, "x"), held_out(test, "y")
    return float((y - affine(x) @ A).pow(2).sum() / (y - y.mean(0)).pow(2).sum())


@pytest.mark.parametrize("skip", [False, True])
def test_transcoder_beats_the_best_linear_map(tmp_path, skip):
    data = make_sparse(skip=skip)
    test = make_sparse(n_windows=64, token_seed=99, skip=skip)
    s = spec(name="tc", out_hookpoint="y", skip=skip)
    trainers, _ = fit_sparse(data, config(s, lr=5e-3), tmp_path)
    coder = trainers["tc"].coder
    assert coder.cfg.kind == "transcoder" and coder.cfg.d_out == 24 and not coder.cfg.apply_b_dec_to_input
    assert (coder.W_skip is not None) == skip
    assert heldout_fvu(coder, held_out(test, "x"), held_out(test, "y")) < 0.7 * _linear_fvu(data, test)


def test_training_reconstruction_matches_inference(sparse, tmp_path):
    trainers, _ = fit_sparse(sparse, config(), tmp_path, n_windows=16)
    coder = trainers["sae"].coder
    x = held_out(sparse)[:100]
    with torch.no_grad():
        y_train, _, _ = topk_forward(coder, coder.pre_acts(x), x, coder.cfg.k)
        torch.testing.assert_close(y_train, coder(x).x_hat, atol=1e-5, rtol=1e-5)


def test_geometric_median_resists_outliers():
    points = torch.cat([torch.randn(99, 4, generator=torch.Generator().manual_seed(0)) * 0.1,
                        torch.full((1, 4), 1000.0)])
    assert geometric_median(points).abs().max() < 0.2
    assert points.mean(0).abs().min() > 5


def test_lr_schedule_warms_up_and_decays_to_zero():
    factors = [lr_factor(s, warmup=10, total=100, decay_fraction=0.2) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == 1.0 and factors[50] == 1.0
    assert factors[80] == 1.0 and factors[99] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(factors[80:], factors[81:]))
