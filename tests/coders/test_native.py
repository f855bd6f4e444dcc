"""SparseCoder maths and saelab's native format: exact save -> load round-trips for every
architecture and kind; the activation rules; CoderConfig validation."""

from __future__ import annotations

import json

import pytest
import torch

from saelab.coders import (
    ARCHITECTURES,
    KINDS,
    CoderConfig,
    SparseCoder,
    batch_topk_activation,
    describe_dictionary,
    load_dictionary,
)
from saelab.errors import ConfigError

D_IN, D_SAE, K = 16, 48, 4


def make_cfg(architecture: str, kind: str) -> CoderConfig:
    kw: dict = {}
    if architecture in ("topk", "batchtopk", "matryoshka"):
        kw["k"] = K
    if architecture == "matryoshka":
        kw["group_sizes"] = (8, 16, 24)
    if kind == "transcoder":
        kw.update(d_out=12, skip=True, apply_b_dec_to_input=False, hookpoint="model.layers.2.mlp:input",
                  out_hookpoint="model.layers.2.mlp")
    if kind == "crosscoder":
        kw.update(n_sources=2, sources=("base", "chat"))
    return CoderConfig(architecture, D_IN, D_SAE, kind=kind, model="tiny", extra={"note": [1, 2]}, **kw)


def randomized(cfg: CoderConfig, seed: int = 0) -> SparseCoder:
    torch.manual_seed(seed)
    coder = SparseCoder(cfg)
    with torch.no_grad():
        for name, t in coder.state_dict().items():
            t.copy_(torch.rand_like(t) * 0.5 if name == "threshold" else torch.randn_like(t) * 0.3)
    return coder


def inputs(coder: SparseCoder, n: int = 20) -> torch.Tensor:
    shape = (n, coder.cfg.n_sources, D_IN) if coder.cfg.kind == "crosscoder" else (n, D_IN)
    return torch.randn(shape, generator=torch.Generator().manual_seed(1))


CASES = [(a, k) for a in ARCHITECTURES for k in KINDS]


@pytest.mark.parametrize("architecture,kind", CASES, ids=[f"{a}-{k}" for a, k in CASES])
def test_save_load_round_trip_is_exact(tmp_path, architecture, kind):
    coder = randomized(make_cfg(architecture, kind))
    path = coder.save(tmp_path / "dict")
    assert sorted(p.name for p in path.iterdir()) == ["cfg.json", "weights.safetensors"]
    for loaded in (SparseCoder.load(path), load_dictionary(path)):
        assert loaded.cfg == coder.cfg
        for name, t in coder.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], t), name
        x = inputs(coder)
        assert torch.equal(loaded(x).x_hat, coder(x).x_hat)


@pytest.mark.parametrize("architecture,kind", CASES, ids=[f"{a}-{k}" for a, k in CASES])
def test_shapes(architecture, kind):
    coder = randomized(make_cfg(architecture, kind))
    out = coder(inputs(coder))
    assert out.latents.shape == (20, D_SAE)
    expected = (20, 2, D_IN) if kind == "crosscoder" else (20, coder.d_out)
    assert out.x_hat.shape == expected
    assert (out.latents >= 0).all()


def test_activation_rules():
    x = torch.randn(30, D_IN)
    topk = randomized(make_cfg("topk", "sae"))
    assert ((topk.encode(x) > 0).sum(-1) <= K).all() and (topk.encode(x) > 0).sum(-1).max() == K
    jump = randomized(make_cfg("jumprelu", "sae"))
    pre, z = jump.pre_acts(x), jump.encode(x)
    assert torch.equal(z, torch.where(pre > jump.threshold, pre, torch.zeros_like(pre)).clamp_min(0))
    btk = randomized(make_cfg("batchtopk", "sae"))
    btk.threshold.fill_(0.4)
    pre = btk.pre_acts(x)
    assert torch.equal(btk.encode(x), pre * (pre > 0.4))
    assert (batch_topk_activation(pre, K) > 0).sum() == K * 30  # training rule: k per token on average


def test_b_dec_shift_and_skip():
    sae = randomized(make_cfg("relu", "sae"))
    x = torch.randn(5, D_IN)
    assert torch.allclose(sae.pre_acts(x), (x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    tc = randomized(make_cfg("relu", "transcoder"))
    z = tc.encode(x)
    assert torch.allclose(tc.decode(z, x=x), z @ tc.W_dec + tc.b_dec + x @ tc.W_skip.T)
    with pytest.raises(ConfigError, match="skip connection"):
        tc.decode(z)


def test_set_decoder_unit_norm_per_source():
    cc = randomized(make_cfg("topk", "crosscoder"))
    cc.set_decoder_unit_norm()
    torch.testing.assert_close(cc.W_dec.norm(dim=-1), torch.ones(D_SAE, 2))


def test_init_is_unit_norm_with_tied_encoder():
    coder = SparseCoder(make_cfg("topk", "sae"))
    torch.testing.assert_close(coder.W_dec.norm(dim=-1), torch.ones(D_SAE))
    assert torch.equal(coder.W_enc, coder.W_dec.T)


def test_describe(tmp_path):
    randomized(make_cfg("matryoshka", "sae")).save(tmp_path / "m")
    info = describe_dictionary(tmp_path / "m")
    assert (info["architecture"], info["kind"], info["d_in"], info["d_sae"], info["k"]) == ("matryoshka", "sae", 16,
                                                                                          48, 4)
    assert info["source_format"] == "saelab" and info["n_params"] == 16 * 48 * 2 + 48 + 16
    json.dumps(info)


@pytest.mark.parametrize("kwargs,field", [
    (dict(architecture="gated"), "architecture"),
    (dict(kind="mixture"), "kind"),
    (dict(d_in=0), "d_in"),
    (dict(architecture="topk"), "k"),
    (dict(architecture="topk", k=49), "k"),
    (dict(k=3), "k"),
    (dict(architecture="matryoshka", k=2, group_sizes=(8, 8)), "group_sizes"),
    (dict(group_sizes=(48,)), "group_sizes"),
    (dict(d_out=8), "d_out"),
    (dict(kind="transcoder", d_out=8), "apply_b_dec_to_input"),
    (dict(n_sources=2), "n_sources"),
    (dict(kind="crosscoder", n_sources=2, sources=("a",)), "sources"),
    (dict(out_hookpoint="x"), "out_hookpoint"),
    (dict(source_format="onnx"), "source_format"),
])
def test_config_validation_names_the_field(kwargs, field):
    base = dict(architecture="relu", d_in=D_IN, d_sae=D_SAE)
    with pytest.raises(ConfigError, match=rf"CoderConfig\.{field}"):
        CoderConfig(**{**base, **kwargs})
