"""The sparse training step against the dense reference: same loss, same gradients (float64), every
architecture, AuxK on; and the same dictionaries after the same steps."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from saelab.coders import CoderConfig, SparseCoder
from saelab.train import CrosscoderConfig
from saelab.train.config import DictionarySpec, TrainConfig
from saelab.train.crosscoder import CrosscoderTrainer
from saelab.train.objective import crosscoder_objective, objective
from saelab.train.reference import dense_crosscoder_objective, dense_objective
from saelab.train.trainer import DictionaryTrainer, coder_config

D_IN, D_SAE, K, N = 24, 96, 6, 80

CASES = {
    "topk": dict(architecture="topk"),
    "batchtopk": dict(architecture="batchtopk"),
    "matryoshka": dict(architecture="matryoshka"),
    "transcoder with skip": dict(architecture="topk", out_hookpoint="out", skip=True),
    "batchtopk transcoder": dict(architecture="batchtopk", out_hookpoint="out"),
}


def _coder(case: dict, dtype=torch.float64) -> tuple[SparseCoder, DictionarySpec]:
    spec = DictionarySpec("d", "in", d_sae=D_SAE, k=K, **case)
    d_out = D_IN + 8 if spec.is_transcoder else D_IN
    torch.manual_seed(0)
    coder = SparseCoder(coder_config(spec, D_IN, d_out, "in", "out", ""), dtype=dtype)
    with torch.no_grad():  # move off the symmetric init so every parameter has a distinct gradient
        for p in coder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return coder, spec


def _grads(coder: SparseCoder, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    coder.zero_grad(set_to_none=True)
    loss.backward()
    return {name: p.grad.clone() for name, p in coder.named_parameters()}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("n_dead", [0, 20, 90])
def test_sparse_gradients_equal_dense(name, n_dead):
    coder, spec = _coder(CASES[name])
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(N, D_IN, generator=gen, dtype=torch.float64)
    y = torch.randn(N, coder.d_out, generator=gen, dtype=torch.float64) if spec.is_transcoder else x
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[torch.randperm(D_SAE, generator=gen)[:n_dead]] = True
    sparse = objective(coder, x, y, dead, 1 / 32, spec.groups())
    g_sparse = _grads(coder, sparse.loss)
    dense = dense_objective(coder, x, y, dead, 1 / 32, spec.groups())
    g_dense = _grads(coder, dense.loss)
    torch.testing.assert_close(sparse.loss, dense.loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sparse.aux_loss, dense.aux_loss, rtol=1e-12, atol=1e-12)
    assert (sparse.aux_loss > 0) == (n_dead > 0)
    assert torch.equal(sparse.fired, dense.fired) and sparse.l0 == dense.l0
    assert sparse.min_selected == pytest.approx(dense.min_selected) if dense.min_selected is not None \
        else sparse.min_selected is None
    for p in g_dense:
        torch.testing.assert_close(g_sparse[p], g_dense[p], rtol=1e-10, atol=1e-12, msg=f"∂{p}")


def _crosscoder(n_shared=0) -> SparseCoder:
    cfg = CoderConfig(architecture="batchtopk", d_in=D_IN, d_sae=D_SAE, k=K, kind="crosscoder", n_sources=2,
                      sources=("base", "target"), apply_b_dec_to_input=True)
    torch.manual_seed(0)
    coder = SparseCoder(cfg, dtype=torch.float64)
    with torch.no_grad():
        for p in coder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return coder


@pytest.mark.parametrize("n_dead", [0, 10, 90])
def test_crosscoder_sparse_gradients_equal_dense(n_dead):
    coder = _crosscoder()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(N, 2, D_IN, generator=gen, dtype=torch.float64)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[:n_dead] = True
    sparse = crosscoder_objective(coder, x, dead, K, 1 / 32)
    g_sparse = _grads(coder, sparse.loss)
    dense = dense_crosscoder_objective(coder, x, dead, K, 1 / 32)
    g_dense = _grads(coder, dense.loss)
    torch.testing.assert_close(sparse.loss, dense.loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sparse.fvu, dense.fvu, rtol=1e-12, atol=1e-12)
    assert torch.equal(sparse.fired, dense.fired) and sparse.l0 == dense.l0
    assert sparse.min_selected == pytest.approx(dense.min_selected)
    for p in g_dense:
        torch.testing.assert_close(g_sparse[p], g_dense[p], rtol=1e-10, atol=1e-12, msg=f"∂{p}")


def test_input_gradient_when_asked():
    """The sparse encoder also gives ∂x when the input needs one (not in training; for completeness)."""
    coder, spec = _coder(CASES["topk"])
    x = torch.randn(N, D_IN, dtype=torch.float64)
    xs, xd = x.clone().requires_grad_(), x.clone().requires_grad_()
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    objective(coder, xs, x, dead, 0.0, spec.groups()).loss.backward()
    dense_objective(coder, xd, x, dead, 0.0, spec.groups()).loss.backward()
    torch.testing.assert_close(xs.grad, xd.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "matryoshka"])
def test_same_dictionary_after_the_same_steps(architecture):
    """Float32, the same seed and batches: the sparse step's trainer ends where the dense one does."""
    spec = DictionarySpec("d", "in", d_sae=256, k=8, architecture=architecture)
    config = TrainConfig((spec,), n_tokens=1, auxk_alpha=1 / 32, dead_tokens=400, encoder_dtype="float32")
    gen = torch.Generator().manual_seed(3)
    batches = [torch.randn(128, 32, generator=gen) for _ in range(30)]
    out = {}
    for reference in (False, True):
        t = DictionaryTrainer(spec, coder_config(spec, 32, 32, "in", None, ""), config, total_steps=30,
                              reference=reference)
        for b in batches:
            m = t.step(b, b)
        out[reference] = (t.coder, m)
    sparse, dense = out[False][0], out[True][0]
    assert out[False][1]["aux_loss"] > 0 or out[True][1]["dead_fraction"] == 0
    for (name, a), b in zip(sparse.named_parameters(), dense.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_crosscoder_same_after_the_same_steps():
    config = CrosscoderConfig(d_sae=128, k=8, n_tokens=128 * 20, batch_size=128, dead_tokens=300,
                              encoder_dtype="float32")
    cfg = CoderConfig(architecture="batchtopk", d_in=16, d_sae=128, k=8, kind="crosscoder", n_sources=2,
                      sources=("base", "target"), apply_b_dec_to_input=True)
    gen = torch.Generator().manual_seed(4)
    batches = [torch.randn(128, 2, 16, generator=gen) for _ in range(20)]
    coders = []
    for reference in (False, True):
        t = CrosscoderTrainer(config, cfg, torch.device("cpu"), reference=reference)
        for b in batches:
            t.step(b)
        coders.append(t.coder)
    for (name, a), b in zip(coders[0].named_parameters(), coders[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_bf16_selection_keeps_float32_values():
    """A bf16 product only picks the entries: the loss is computed from float32 activations, close to the
    float32 step's."""
    spec = DictionarySpec("d", "in", d_sae=512, k=16)
    torch.manual_seed(0)
    coder = SparseCoder(coder_config(spec, 64, 64, "in", None, ""))
    x = torch.randn(256, 64)
    dead = torch.zeros(512, dtype=torch.bool)
    f32 = objective(coder, x, x, dead, 0.0, spec.groups(), torch.float32)
    b16 = objective(coder, x, x, dead, 0.0, spec.groups(), torch.bfloat16)
    assert b16.loss.dtype == torch.float32
    assert abs(float(b16.fvu) - float(f32.fvu)) < 0.01


def test_encoder_dtype_is_checked():
    from saelab.errors import ConfigError

    with pytest.raises(ConfigError, match="encoder_dtype"):
        dataclasses.replace(TrainConfig((DictionarySpec("d", "in", 64),)), encoder_dtype="fp8")


def test_crosscoder_logs_heldout_fvu_and_decoder_movement(tmp_path):
    from saelab.train.crosscoder import train_crosscoder

    gen = torch.Generator().manual_seed(5)
    data = torch.randn(2048, 2, 16, generator=gen)
    config = CrosscoderConfig(d_sae=64, k=4, n_tokens=128 * 40, batch_size=128, checkpoint_every=0)
    coder = train_crosscoder(lambda: iter(data[:1792].split(256)), config, d_in=16, hookpoint="h", out_dir=tmp_path,
                             progress=False, heldout=data[1792:])
    log = [json.loads(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    held = [r for r in log if "heldout_fvu" in r]
    assert len(held) == 20 and {"heldout_fvu_base", "heldout_fvu_target"} <= set(held[-1])
    training = coder.cfg.extra["training"]
    assert training["heldout_fvu"] == held[-1]["heldout_fvu"] and training["decoder_cos_init"] < 1.0
