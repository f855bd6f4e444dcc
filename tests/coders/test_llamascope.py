"""Llama Scope (lm-saes 1.0 as published, and llamascopium 2): metadata, variants and errors.

Encode/decode against files written by the libraries themselves is in test_peer_fixtures.py.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from saelab.coders import load_dictionary
from saelab.coders.formats import llamascope
from saelab.errors import FormatError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "llamascope"
R = FIXTURES / "Llama3_1-8B-Base-LXR-4x/Llama3_1-8B-Base-L3R-4x"
TC = FIXTURES / "Llama3_1-8B-Base-LXTC-4x/Llama3_1-8B-Base-L3TC-4x"
V2_SAE, V2_TC = FIXTURES / "llamascopium/sae", FIXTURES / "llamascopium/transcoder"


def _copy(src: Path, tmp_path: Path, edit: dict, name: str = "hyperparams.json") -> Path:
    target = tmp_path / src.name
    shutil.copytree(src, target)
    cfg = json.loads((target / name).read_text())
    (target / name).write_text(json.dumps({**cfg, **edit}))
    return target


def test_site_model_and_hookpoints():
    r, tc = load_dictionary(R).cfg, load_dictionary(TC).cfg
    assert (r.model, r.extra["site"], r.kind, r.out_hookpoint) == ("meta-llama/Llama-3.1-8B", "R", "sae", None)
    assert (tc.extra["site"], tc.kind, tc.out_hookpoint) == ("TC", "transcoder", "blocks.3.hook_mlp_out")
    v2 = load_dictionary(V2_TC).cfg
    assert (v2.extra["layout"], v2.extra["site"], v2.out_hookpoint) == ("llamascopium", "TC", "blocks.3.hook_mlp_out")


def test_the_repository_directory_holds_one_dictionary():
    assert load_dictionary(R.parent).cfg.hookpoint == "blocks.3.hook_resid_post"


def test_dataset_norms_are_folded(tmp_path):
    """The same weights read without the dataset-wise scales give other outputs."""
    x = load_file(str(R / "peer_io.safetensors"))["x"]
    raw = load_dictionary(_copy(R, tmp_path, {"norm_activation": "inference"}))
    with torch.no_grad():
        assert not torch.allclose(raw(x).x_hat, load_dictionary(R)(x).x_hat, atol=1e-3)


def test_published_topk_without_threshold_stays_topk(tmp_path):
    coder = load_dictionary(_copy(R, tmp_path, {"act_fn": "topk", "jump_relu_threshold": 0.0}))
    assert (coder.cfg.architecture, coder.cfg.k) == ("topk", 8)
    with torch.no_grad():
        assert ((coder.encode(torch.randn(4, 64) * 2) > 0).sum(-1) == 8).all()


def test_llamascopium_topk_folds_the_decoder_norm(tmp_path):
    """llamascopium TopK ranks pre * ‖W_D row‖ and divides back: x_hat as its formula, latents times the norm."""
    directory = _copy(V2_SAE, tmp_path, {"act_fn": "topk", "top_k": 8}, name="config.json")
    coder = load_dictionary(directory)
    assert (coder.cfg.architecture, coder.cfg.k, coder.cfg.extra["folded_decoder_norm"]) == ("topk", 8, True)
    w = load_file(str(directory / "sae_weights.safetensors"))
    s = math.sqrt(64) / w["dataset_average_activation_norm.blocks.3.hook_resid_post"].item()
    x = torch.randn(6, 64) * 1.5
    norms = w["W_D"].norm(dim=-1)
    pre = (x * s @ w["W_E"] + w["b_E"]) * norms
    top = torch.relu(pre).topk(8, dim=-1)
    acts = torch.zeros_like(pre).scatter(-1, top.indices, top.values) / norms  # llamascopium's latents
    x_hat = (acts @ w["W_D"] + w["b_D"]) / s
    with torch.no_grad():
        out = coder(x)
    torch.testing.assert_close(out.x_hat, x_hat, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.latents, acts * norms, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("edit", "message"), [
    ({"norm_activation": "token-wise"}, r"hyperparams\.json: norm_activation='token-wise' is not supported"),
    ({"dataset_average_activation_norm": {"in": 8.0}}, r"dataset_average_activation_norm has no out value"),
    ({"use_glu_encoder": True}, r"use_glu_encoder is true"),
    ({"act_fn": "batchtopk"}, r"act_fn 'batchtopk' is not supported; saelab reads relu, jumprelu, topk"),
])
def test_published_config_errors_name_the_file(tmp_path, edit, message):
    with pytest.raises(FormatError, match=message):
        load_dictionary(_copy(R, tmp_path, edit))


def test_llamascopium_errors(tmp_path):
    with pytest.raises(FormatError, match=r"config\.json: sae_type 'crosscoder' is not supported"):
        llamascope.load(_copy(V2_SAE, tmp_path, {"sae_type": "crosscoder"}, name="config.json"))
    broken = tmp_path / "broken"
    shutil.copytree(V2_SAE, broken)
    (broken / "sae_weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(FormatError, match=r"sae_weights\.safetensors: not a readable safetensors file"):
        load_dictionary(broken)


def test_detection_leaves_other_config_json_alone(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"trainer": {}}))
    (tmp_path / "sae_weights.safetensors").write_bytes(b"")
    assert not llamascope.detect(tmp_path)
    assert llamascope.detect(R) and llamascope.detect(V2_SAE)


def test_files_name_the_published_tree():
    from saelab.coders.tree import find_dictionaries

    listing = [f"Llama3_1-8B-Base-L{n}R-8x/{f}" for n in (3, 15) for f in (*llamascope.FILES, "lm_config.json")]
    found = find_dictionaries(listing, [llamascope], context="fnlp/Llama3_1-8B-Base-LXR-8x")
    assert [(c.path, c.format, c.facts["layer"], c.facts["site"]) for c in found] == [
        ("Llama3_1-8B-Base-L3R-8x", "llamascope", 3, "res"), ("Llama3_1-8B-Base-L15R-8x", "llamascope", 15, "res")]
