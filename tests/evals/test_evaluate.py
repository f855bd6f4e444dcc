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
        evaluate_many([Identity()], tiny_llama, windows, EvalConfig(n_tokens=10_000, ce_n_tokens=0), progress=False)


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
    with pytest.raises(ConfigError, match="dense:pca, dense:pca:K or dense:linear"):
        compare("a", "dense:svd", ws, tiny_llama, windows, tmp_path / "c3", CFG, progress=False)


def test_compare_resume_keeps_a_whole_comparison_and_redoes_a_changed_one(tiny_llama, windows, tmp_path):
    ws, out = Workspace(tmp_path / "ws"), tmp_path / "cmp"
    torch.manual_seed(0)
    for name in ("a", "b"):
        SparseCoder(CoderConfig(architecture="topk", d_in=32, d_sae=64, k=4, hookpoint=HP)).save(ws.dictionary(name))
    first = compare("a", "b", ws, tiny_llama, windows, out, CFG, progress=False, resume=True)
    again = compare("a", "b", ws, tiny_llama, windows, out, CFG, progress=False, resume=True)
    assert not first["reused"] and again["reused"]
    assert again["rows"] == first["rows"] and again["summary_text"] == first["summary_text"]
    assert again["a"]["reconstruction"]["fvu"] == first["a"]["reconstruction"]["fvu"]
    # other settings, or other weights under the same name, are computed afresh
    other = EvalConfig(n_tokens=80, ce_n_tokens=64, batch_size=4, metrics=CFG.metrics)
    assert not compare("a", "b", ws, tiny_llama, windows, out, other, progress=False, resume=True)["reused"]
    SparseCoder(CoderConfig(architecture="topk", d_in=32, d_sae=64, k=8, hookpoint=HP)).save(ws.dictionary("b"))
    changed = compare("a", "b", ws, tiny_llama, windows, out, other, progress=False, resume=True)
    assert not changed["reused"]
    assert next(r for r in changed["rows"] if r["metric"] == "sparsity.l0")["b"] > 4
    # the same model from another path (a moved cache) keeps it; other model weights do not
    from dataclasses import replace

    moved = replace(tiny_llama, path="/elsewhere/the-same-model")
    assert compare("a", "b", ws, moved, windows, out, other, progress=False, resume=True)["reused"]
    import copy

    tuned = replace(tiny_llama, model=copy.deepcopy(tiny_llama.model))
    with torch.no_grad():
        next(tuned.model.parameters()).mul_(1.01)
    assert not compare("a", "b", ws, tuned, windows, out, other, progress=False, resume=True)["reused"]
    # without resume a comparison is always computed
    assert not compare("a", "b", ws, tiny_llama, windows, out, other, progress=False)["reused"]
