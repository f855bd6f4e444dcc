"""Dictionaries written by SAELens, sparsify and dictionary_learning (and a Gemma Scope npz) load
into saelab and encode/decode exactly as the library itself did (tests/fixtures/make_fixtures.py).

The peer libraries are not needed here: their outputs are stored beside each fixture.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from saelab.coders import load_dictionary
from saelab.errors import FormatError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PEER_DIRS = sorted(p.parent for p in FIXTURES.rglob("peer_io.safetensors"))

# fixture (relative to tests/fixtures) -> (source_format, architecture, kind, apply_b_dec_to_input, k, hookpoint)
EXPECTED = {
    "saelens/standard": ("saelens", "relu", "sae", True, None, "blocks.3.hook_resid_post"),
    "saelens/no_b_dec_shift": ("saelens", "relu", "sae", False, None, "blocks.3.hook_resid_post"),
    "saelens/jumprelu": ("saelens", "jumprelu", "sae", True, None, "blocks.3.hook_resid_post"),
    "saelens/topk": ("saelens", "topk", "sae", True, 8, "blocks.3.hook_resid_post"),
    "saelens/topk_rescaled": ("saelens", "topk", "sae", True, 8, "blocks.3.hook_resid_post"),
    "saelens/batchtopk_inference": ("saelens", "jumprelu", "sae", True, None, "blocks.3.hook_resid_post"),
    "saelens/transcoder": ("saelens", "relu", "transcoder", False, None, "blocks.3.ln2.hook_normalized"),
    "saelens/jumprelu_skip_transcoder": ("saelens", "jumprelu", "transcoder", False, None,
                                         "blocks.3.ln2.hook_normalized"),
    "saelens/old_standard": ("saelens", "relu", "sae", True, None, "blocks.3.hook_resid_post"),
    "saelens/old_topk": ("saelens", "topk", "sae", True, 8, "blocks.3.hook_resid_post"),
    "gemmascope/layer_3/width_256/average_l0_20": ("gemmascope", "jumprelu", "sae", False, None, ""),
    "sparsify/run/layers.3": ("sparsify", "topk", "sae", True, 8, "layers.3"),
    "sparsify/run/layers.3.mlp": ("sparsify", "topk", "transcoder", False, 8, "layers.3.mlp:input"),
    "dictionary_learning/relu": ("dictionary_learning", "relu", "sae", True, None, "resid_post.3"),
    "dictionary_learning/jumprelu": ("dictionary_learning", "jumprelu", "sae", False, None, "resid_post.3"),
    "dictionary_learning/topk": ("dictionary_learning", "topk", "sae", True, 8, "resid_post.3"),
    "dictionary_learning/batchtopk": ("dictionary_learning", "batchtopk", "sae", True, 8, "resid_post.3"),
    "dictionary_learning/matryoshka": ("dictionary_learning", "matryoshka", "sae", True, 8, "resid_post.3"),
    # layouts rebuilt from the published code (tests/coders/test_crosscoder_formats.py); x [N, 2, d_in]
    "crosscoders/dictionary_learning_crosscoder": ("dictionary_learning_crosscoder", "batchtopk", "crosscoder", False,
                                                   8, ""),
    "crosscoders/crosscoder_model_diff": ("crosscoder_model_diff", "relu", "crosscoder", False, None,
                                          "blocks.4.hook_resid_pre"),
    # Llama Scope as published (lm-saes 1.0) and llamascopium 2; dataset-wise norms folded in
    "llamascope/Llama3_1-8B-Base-LXR-4x/Llama3_1-8B-Base-L3R-4x": ("llamascope", "jumprelu", "sae", False, None,
                                                                    "blocks.3.hook_resid_post"),
    "llamascope/Llama3_1-8B-Base-LXTC-4x/Llama3_1-8B-Base-L3TC-4x": ("llamascope", "jumprelu", "transcoder", False,
                                                                      None, "blocks.3.ln2.hook_normalized"),
    "llamascope/llamascopium/sae": ("llamascope", "jumprelu", "sae", False, None, "blocks.3.hook_resid_post"),
    "llamascope/llamascopium/transcoder": ("llamascope", "jumprelu", "transcoder", False, None,
                                           "blocks.3.ln2.hook_normalized"),
    # published layout, outputs from a reference forward of the published formula
    "gemmascope_transcoders/gemma-scope-2b-pt-transcoders/layer_3/width_256/average_l0_20": (
        "gemmascope", "jumprelu", "transcoder", False, None, "model.layers.3.pre_feedforward_layernorm"),
}


def _name(directory: Path) -> str:
    return directory.relative_to(FIXTURES).as_posix()


def test_every_fixture_is_expected():
    assert sorted(_name(d) for d in PEER_DIRS) == sorted(EXPECTED)


@pytest.mark.parametrize("directory", PEER_DIRS, ids=_name)
def test_encode_decode_match_the_library(directory: Path):
    io = load_file(str(directory / "peer_io.safetensors"))
    x, latents, x_hat = io["x"], io["latents"], io["x_hat"]  # [N, d_in], [N, d_sae], [N, d_out]
    coder = load_dictionary(directory)
    with torch.no_grad():
        out = coder(x)
    assert torch.equal(out.latents > 0, latents > 0), "a different set of latents fired"
    torch.testing.assert_close(out.latents, latents, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.x_hat, x_hat, rtol=1e-5, atol=1e-5)
    # encode / decode separately agree with forward (decode needs x only for a skip connection)
    torch.testing.assert_close(coder.decode(coder.encode(x), x=x), out.x_hat, rtol=0, atol=0)


@pytest.mark.parametrize("directory", PEER_DIRS, ids=_name)
def test_metadata_read_from_the_config(directory: Path):
    source_format, architecture, kind, shift, k, hookpoint = EXPECTED[_name(directory)]
    cfg = load_dictionary(directory).cfg
    got = (cfg.source_format, cfg.architecture, cfg.kind, cfg.apply_b_dec_to_input, cfg.k, cfg.hookpoint)
    assert got == (source_format, architecture, kind, shift, k, hookpoint)
    assert (cfg.d_in, cfg.d_sae) == (64, 256)


def test_peer_json_names_the_library():
    for directory in PEER_DIRS:
        info = json.loads((directory / "peer.json").read_text())
        assert info["library"] and info["version"] and info["how"]


def test_matryoshka_groups_and_transcoder_widths():
    assert load_dictionary(FIXTURES / "dictionary_learning/matryoshka").cfg.group_sizes == (64, 192)
    skip = load_dictionary(FIXTURES / "saelens/jumprelu_skip_transcoder")
    assert (skip.d_out, skip.cfg.skip, skip.cfg.out_hookpoint) == (48, True, "blocks.3.hook_mlp_out")
    mlp = load_dictionary(FIXTURES / "sparsify/run/layers.3.mlp")
    assert (mlp.cfg.skip, mlp.cfg.out_hookpoint) == (True, "layers.3.mlp")


def test_sparsify_run_directory_picks_a_hookpoint():
    run = FIXTURES / "sparsify/run"
    assert load_dictionary(run, hookpoint="layers.3.mlp").cfg.kind == "transcoder"
    assert load_dictionary(run, hookpoint="layers.3").cfg.kind == "sae"
    with pytest.raises(FormatError, match=r"holds 2 dictionaries: layers\.3, layers\.3\.mlp; pick one with "
                                          r"--hookpoint"):
        load_dictionary(run)
    with pytest.raises(FormatError, match=r"no dictionary matches --hookpoint layers\.9; the tree holds 2: layers\.3, "
                                          r"layers\.3\.mlp"):
        load_dictionary(run, hookpoint="layers.9")


def test_single_files_load_directly():
    npz = FIXTURES / "gemmascope/layer_3/width_256/average_l0_20/params.npz"
    assert load_dictionary(npz).cfg.source_format == "gemmascope"
    assert load_dictionary(FIXTURES / "dictionary_learning/topk/ae.pt").cfg.architecture == "topk"


def test_dtype_argument_casts_the_weights():
    coder = load_dictionary(FIXTURES / "saelens/topk", dtype=torch.bfloat16)
    assert coder.W_enc.dtype == torch.bfloat16 and coder.dtype == torch.bfloat16


def test_gemmascope_hookpoint_and_model_from_the_release_path(tmp_path):
    fixture = FIXTURES / "gemmascope/layer_3/width_256/average_l0_20"
    for release, hookpoint, model in (("gemma-scope-2b-pt-res", "resid_post.3", "google/gemma-2-2b"),
                                      ("models--google--gemma-scope-9b-it-mlp", "mlp_out.3", "google/gemma-2-9b-it"),
                                      ("gemma-scope-2b-pt-att", "", "google/gemma-2-2b")):
        target = tmp_path / release / "snapshots/abc/layer_3/width_16k/average_l0_20"
        target.mkdir(parents=True)
        (target / "params.npz").symlink_to(fixture / "params.npz")
        cfg = load_dictionary(target).cfg
        assert (cfg.hookpoint, cfg.model) == (hookpoint, model)
