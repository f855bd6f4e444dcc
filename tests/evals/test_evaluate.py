"""Evaluation end to end on a tiny model: splice identities, baselines, outputs, errors."""

import json

import pytest
import torch

from saelab.coders import CoderConfig, SparseCoder
from saelab.data import TokenizeConfig, tokenize_corpus
from saelab.errors import ConfigError
from saelab.evals import CoderReconstructor, EvalConfig, Reconstructor, compare, evaluate_many, run_eval
from saelab.workspace import Workspace

HP = "model.layers.1"


class Identity(Reconstructor):
    name, hookpoint, out_hookpoint, d_in, d_sae, kind = "identity", HP, HP, 32, None, "dense"

    def __call__(self, x):
        return None, x.clone()


class Zero(Identity):
    name = "zero"

    def __call__(self, x):
        return None, torch.zeros_like(x)


@pytest.fixture
def windows(tiny_llama, small_corpus):
    return tokenize_corpus(small_corpus, tiny_llama.tokenizer, TokenizeConfig(ctx_len=16, n_tokens=320))


CFG = EvalConfig(n_tokens=160, ce_n_tokens=64, batch_size=4, metrics=("reconstruction", "sparsity", "downstream"))


def test_ce_score_is_one_for_identity_and_zero_for_zero_ablation(tiny_llama, windows):
    ident, zero = evaluate_many([Identity(), Zero()], tiny_llama, windows, CFG, progress=False)
    assert ident["downstream"]["ce_loss_score"] == pytest.approx(1.0, abs=1e-6)
    assert ident["downstream"]["kl_with_reconstruction"] == pytest.approx(0.0, abs=1e-6)
    assert ident["downstream"]["kl_score"] == pytest.approx(1.0, abs=1e-6)
    assert zero["downstream"]["ce_loss_score"] == pytest.approx(0.0, abs=1e-6)
    assert ident["reconstruction"]["fvu"] == pytest.approx(0.0, abs=1e-9)
    assert ident["sparsity"] == {"not_applicable": "a dense map has no latents"}
    # every text position of the evaluated windows is counted once
    n_text = int(windows.text_mask()[-10:].sum())
    assert ident["reconstruction"]["n_tokens"] == n_text


def test_random_sae_metrics_are_sane_and_d_in_mismatch_is_refused(tiny_llama, windows):
    torch.manual_seed(0)
    sae = SparseCoder(CoderConfig(architecture="topk", d_in=32, d_sae=64, k=4, hookpoint=HP))
    m, = evaluate_many([CoderReconstructor(sae, "rand")], tiny_llama, windows, CFG, progress=False)
    assert m["sparsity"]["l0"] <= 4 and m["reconstruction"]["fvu"] > 0
    assert 0 <= m["sparsity"]["dead_fraction"] <= 1
    wrong = SparseCoder(CoderConfig(architecture="topk", d_in=16, d_sae=64, k=4, hookpoint=HP))
    with pytest.raises(ConfigError, match="d_in 16.*width 32"):
        evaluate_many([CoderReconstructor(wrong, "wrong")], tiny_llama, windows, CFG, progress=False)


def test_too_few_tokens_is_a_clear_error(tiny_llama, windows):
    with pytest.raises(ConfigError, match="lower --n-tokens"):
        evaluate_many([Identity()], tiny_llama, windows, EvalConfig(n_tokens=10_000, ce_n_tokens=0,
                                                                     metrics=("reconstruction", "sparsity")),
                      progress=False)


def test_run_eval_and_compare_write_their_files(tiny_llama, windows, tmp_path):
    ws = Workspace(tmp_path / "ws")
    torch.manual_seed(0)
    for name, k in (("a", 4), ("b", 8)):
        SparseCoder(CoderConfig(architecture="topk", d_in=32, d_sae=64, k=k, hookpoint=HP)).save(ws.dictionary(name))
    m = run_eval("a", ws, tiny_llama, windows, CFG, progress=False)
    out = ws.evals("a")
    assert json.loads((out / "metrics.json").read_text())["sparsity"]["l0"] == m["sparsity"]["l0"]
    assert "FVU" in (out / "summary.txt").read_text() and (out / "cfg.json").exists()
    c = compare("a", "b", ws, tiny_llama, windows, tmp_path / "cmp", CFG, progress=False)
    files = {p.name for p in (tmp_path / "cmp").iterdir()}
    assert {"comparison.json", "a_metrics.json", "b_metrics.json", "summary.txt", "fvu_vs_l0.png",
            "firing_frequency.png", "cfg.json"} <= files
    l0_row = next(r for r in c["rows"] if r["metric"] == "sparsity.l0")
    assert l0_row["a"] <= 4 < l0_row["b"] <= 8 and l0_row["winner"] == "—"


def test_dense_baselines(tiny_llama, windows, tmp_path):
    ws = Workspace(tmp_path / "ws")
    SparseCoder(CoderConfig(architecture="topk", d_in=32, d_sae=64, k=4, hookpoint=HP)).save(ws.dictionary("a"))
    full = compare("a", "dense:pca:32", ws, tiny_llama, windows, tmp_path / "c1", CFG, progress=False)
    assert full["b"]["reconstruction"]["fvu"] < 1e-6  # all 32 directions: exact up to round-off
    pca = compare("a", "dense:pca", ws, tiny_llama, windows, tmp_path / "c2", CFG, progress=False)
    assert pca["b"]["dictionary"]["k"] == round(pca["a"]["sparsity"]["l0"]) or pca["b"]["dictionary"]["k"] >= 1
    assert 0 < pca["b"]["reconstruction"]["fvu"] < 1
    assert next(r for r in pca["rows"] if r["metric"] == "sparsity.dead_fraction")["winner"] == "not applicable"
    with pytest.raises(ConfigError, match=r"expected dense:pca .* dense:pca:K .* or dense:linear"):
        compare("a", "dense:svd", ws, tiny_llama, windows, tmp_path / "c3", CFG, progress=False)


def test_compare_resume_keeps_a_whole_comparison_and_refuses_a_changed_one(tiny_llama, windows, tmp_path):
    from saelab.errors import ArtifactError

    ws, out = Workspace(tmp_path / "ws"), tmp_path / "cmp"
    torch.manual_seed(0)
    for name in ("a", "b"):
        SparseCoder(CoderConfig(architecture="topk", d_in=32, d_sae=64, k=4, hookpoint=HP)).save(ws.dictionary(name))
    first = compare("a", "b", ws, tiny_llama, windows, out, CFG, progress=False)
    again = compare("a", "b", ws, tiny_llama, windows, out, CFG, progress=False)
    assert not first["reused"] and again["reused"]
    assert again["rows"] == first["rows"] and again["summary_text"] == first["summary_text"]
    assert again["a"]["reconstruction"]["fvu"] == first["a"]["reconstruction"]["fvu"]
    # other settings, or other weights under the same name: refused, naming the difference, until overwrite
    other = EvalConfig(n_tokens=80, ce_n_tokens=64, batch_size=4, metrics=CFG.metrics)
    with pytest.raises(ArtifactError, match=r"config.n_tokens.*--overwrite"):
        compare("a", "b", ws, tiny_llama, windows, out, other, progress=False)
    assert compare("a", "b", ws, tiny_llama, windows, out, CFG, progress=False)["reused"]  # nothing was touched
    assert not compare("a", "b", ws, tiny_llama, windows, out, other, progress=False, overwrite=True)["reused"]
    SparseCoder(CoderConfig(architecture="topk", d_in=32, d_sae=64, k=8, hookpoint=HP)).save(ws.dictionary("b"))
    with pytest.raises(ArtifactError, match="dictionary_hashes"):
        compare("a", "b", ws, tiny_llama, windows, out, other, progress=False)
    changed = compare("a", "b", ws, tiny_llama, windows, out, other, progress=False, overwrite=True)
    assert not changed["reused"]
    assert next(r for r in changed["rows"] if r["metric"] == "sparsity.l0")["b"] > 4
    # the same model from another path (a moved cache) keeps it; other model weights do not
    from dataclasses import replace

    moved = replace(tiny_llama, path="/elsewhere/the-same-model")
    assert compare("a", "b", ws, moved, windows, out, other, progress=False)["reused"]
    import copy

    tuned = replace(tiny_llama, model=copy.deepcopy(tiny_llama.model))
    with torch.no_grad():
        next(tuned.model.parameters()).mul_(1.01)
    with pytest.raises(ArtifactError, match="model.weights"):
        compare("a", "b", ws, tuned, windows, out, other, progress=False)
    assert not compare("a", "b", ws, tuned, windows, out, other, progress=False, overwrite=True)["reused"]
    # resume=False (older callers) always computes
    assert not compare("a", "b", ws, tiny_llama, windows, out, other, progress=False, resume=False)["reused"]


def test_eval_is_read_back_refused_when_changed_and_replaced_with_overwrite(tiny_llama, windows, tmp_path):
    from saelab.errors import ArtifactError

    ws = Workspace(tmp_path / "ws")
    torch.manual_seed(0)
    SparseCoder(CoderConfig(architecture="topk", d_in=32, d_sae=64, k=4, hookpoint=HP)).save(ws.dictionary("a"))
    first = run_eval("a", ws, tiny_llama, windows, CFG, progress=False)
    again = run_eval("a", ws, tiny_llama, windows, CFG, progress=False)
    assert not first["reused"] and again["reused"] and again["sparsity"] == first["sparsity"]
    SparseCoder(CoderConfig(architecture="topk", d_in=32, d_sae=64, k=8, hookpoint=HP)).save(ws.dictionary("a"))
    with pytest.raises(ArtifactError, match="dictionary_hash.*--overwrite"):
        run_eval("a", ws, tiny_llama, windows, CFG, progress=False)
    assert json.loads((ws.evals("a") / "metrics.json").read_text())["sparsity"] == first["sparsity"]  # kept
    replaced = run_eval("a", ws, tiny_llama, windows, CFG, progress=False, overwrite=True)
    assert not replaced["reused"] and replaced["sparsity"]["l0"] > first["sparsity"]["l0"]


def test_an_interrupted_comparison_is_computed_again_without_overwrite(tiny_llama, windows, tmp_path, monkeypatch):
    import importlib

    ws, out = Workspace(tmp_path / "ws"), tmp_path / "cmp"
    torch.manual_seed(0)
    for name in ("a", "b"):
        SparseCoder(CoderConfig(architecture="topk", d_in=32, d_sae=64, k=4, hookpoint=HP)).save(ws.dictionary(name))
    plots = importlib.import_module("saelab.evals.plots")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "frequency_histograms", interrupted)  # Ctrl-C after the metrics, before cfg.json
    with pytest.raises(KeyboardInterrupt):
        compare("a", "b", ws, tiny_llama, windows, out, CFG, progress=False)
    assert (out / "comparison.json").exists() and not (out / "cfg.json").exists()  # incomplete: no cfg.json
    assert not (out / ".lock").exists()  # released on Ctrl-C
    monkeypatch.undo()
    assert not compare("a", "b", ws, tiny_llama, windows, out, CFG, progress=False)["reused"]  # not refused
    assert compare("a", "b", ws, tiny_llama, windows, out, CFG, progress=False)["reused"]


@pytest.mark.parametrize("spec, d_in, expected", [
    ("dense:pca", 32, ("pca", None)), ("dense:pca:4", 32, ("pca", 4)), ("dense:pca:32", 32, ("pca", 32)),
    ("dense:linear", None, ("linear", None)),
])
def test_dense_specs_parse(spec, d_in, expected):
    from saelab.evals.reconstructors import parse_dense_spec

    assert parse_dense_spec(spec, d_in) == expected


@pytest.mark.parametrize("spec, message", [
    ("dense:pca:0", "from 1 to 32"), ("dense:pca:-3", "from 1 to 32"), ("dense:pca:33", "from 1 to 32"),
    ("dense:pca:x", "from 1 to 32"), ("dense:pca:", None), ("dense:linear:2", "expected dense:pca"),
    ("dense:svd", "expected dense:pca"),
])
def test_dense_specs_out_of_range_are_refused(spec, message):
    """PCA with K = 0 once kept every direction (a slice [-0:]) and scored a perfect FVU of 0."""
    from saelab.evals.reconstructors import parse_dense_spec

    if message is None:  # an empty K is the default K
        assert parse_dense_spec(spec, 32) == ("pca", None)
        return
    with pytest.raises(ConfigError, match=message):
        parse_dense_spec(spec, 32)


def test_no_ce_tokens_with_downstream_metrics_is_refused():
    with pytest.raises(ConfigError, match=r"ce_n_tokens: got 0.*--metrics reconstruction,sparsity"):
        EvalConfig(ce_n_tokens=0, metrics=("reconstruction", "sparsity", "downstream"))
    assert EvalConfig(ce_n_tokens=0, metrics=("reconstruction",)).ce_n_tokens == 0
