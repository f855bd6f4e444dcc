"""`saelab train --random-init` (random:MODEL@SEED) and the identity of a random model downstream: its own
default names and training run, its spec in the dictionary's cfg.json and the store's, and autointerp refusing
a MODEL argument that names the trained model (or another seed) for a random model's store."""

from __future__ import annotations

import json

import pytest

from saelab.errors import ConfigError
from tests.conftest import corpus_file, run_cli, save_model

HP = "resid_post.1"
TRAIN = ("-H", HP, "--d-sae", "64", "--k", "4", "--n-tokens", "1024", "--batch-size", "4", "--dtype", "float32",
         "--checkpoint-every", "100")


@pytest.fixture(scope="module")
def ws(tiny_llama, tmp_path_factory, one_thread):
    """A workspace with windows of the tiny Llama, a dictionary trained on it and one on random:MODEL@3, each
    cached with its own model."""
    root = tmp_path_factory.mktemp("random-init")
    model = save_model(tiny_llama, root / "model")
    ws = root / "ws"
    assert run_cli("tokens", "-m", model, "-w", ws, "--corpus", corpus_file(root, 120), "--ctx-len", "32",
                   "--n-tokens", "3072") == 0
    assert run_cli("train", "-m", model, "-w", ws, *TRAIN) == 0
    assert run_cli("train", "-m", model, "-w", ws, *TRAIN, "--random-init", "--seed", "3") == 0
    assert run_cli("cache", "-m", model, "-w", ws, "-d", f"topk-{HP}-64-k4", "--dtype", "float32") == 0
    assert run_cli("cache", "-m", f"random:{model}@3", "-w", ws, "-d", f"random-topk-{HP}-64-k4",
                   "--dtype", "float32") == 0
    return ws, model


def _cfg(path):
    return json.loads(path.read_text())


def test_random_init_trains_under_its_own_name_and_records_its_spec(ws):
    root, model = ws
    trained, rnd = (_cfg(root / "dictionaries" / n / "cfg.json") for n in (f"topk-{HP}-64-k4",
                                                                          f"random-topk-{HP}-64-k4"))
    assert rnd["model"] == f"random:{model}@3" and trained["model"] == model
    described = rnd["extra"]["training"]["model"]
    assert described["spec"] == described["path"] == f"random:{model}@3" and described["random_init"]["seed"] == 3
    assert "random_init" not in trained["extra"]["training"]["model"]
    store = _cfg(root / "latents" / f"random-topk-{HP}-64-k4" / "cfg.json")
    assert store["model"]["path"] == f"random:{model}@3"
    assert _cfg(root / "latents" / f"topk-{HP}-64-k4" / "cfg.json")["model"]["path"] == model


def test_random_init_says_what_it_does(ws, capsys):
    root, model = ws
    capsys.readouterr()
    assert run_cli("train", "-m", model, "-w", root, *TRAIN, "--random-init", "--seed", "3") == 0  # resumes: done
    out = " ".join(capsys.readouterr().out.split())
    assert f"--random-init: training on random:{model}@3: {model}'s architecture, config and tokenizer with every " \
           "weight randomly initialised (seed 3)" in out


def test_random_init_of_a_random_model_is_refused(ws, capsys):
    root, model = ws
    assert run_cli("train", "-m", f"random:{model}", "-w", root, *TRAIN, "--random-init") == 2
    assert "--random-init: --model is already" in capsys.readouterr().err


@pytest.mark.parametrize("given, ok", [("{model}", False), ("random:{model}@3", True), ("random:{model}@4", False),
                                       ("random:{model}", False)])
def test_autointerp_tells_the_random_store_from_the_trained_model(ws, given, ok):
    from saelab.cli.interp import refuse_other_subject
    from saelab.workspace import Workspace

    root, model = ws
    w, spec = Workspace.at(root), given.format(model=model)
    if ok:
        refuse_other_subject(w, spec, f"random-topk-{HP}-64-k4")
    else:
        with pytest.raises(ConfigError, match=f"was cached from 'random:{model}@3'"):
            refuse_other_subject(w, spec, f"random-topk-{HP}-64-k4")


@pytest.mark.parametrize("given, ok", [("{model}", True), ("random:{model}@3", False), ("random:{model}@0", False)])
def test_autointerp_tells_the_trained_store_from_a_random_model(ws, given, ok):
    from saelab.cli.interp import refuse_other_subject
    from saelab.workspace import Workspace

    root, model = ws
    w, spec = Workspace.at(root), given.format(model=model)
    if ok:
        refuse_other_subject(w, spec, f"topk-{HP}-64-k4")
    else:
        with pytest.raises(ConfigError, match="model: got 'random:"):
            refuse_other_subject(w, spec, f"topk-{HP}-64-k4")
