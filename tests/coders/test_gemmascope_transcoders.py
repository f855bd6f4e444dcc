"""Gemma Scope transcoders: read as kind "transcoder" between Gemma 2's pre- and post-feed-forward
norms, from the path or an explicit `kind`; spliced in place of the MLP on a tiny random Gemma 2.

The fixture (tests/fixtures/gemmascope_transcoders) is built in the published layout; its
encode/decode outputs are checked in test_peer_fixtures.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from saelab.coders import load_dictionary
from saelab.coders.formats import gemmascope
from saelab.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TRANSCODER = FIXTURES / "gemmascope_transcoders/gemma-scope-2b-pt-transcoders/layer_3/width_256/average_l0_20"
SAE = FIXTURES / "gemmascope/layer_3/width_256/average_l0_20"


def test_transcoder_hookpoints_from_the_release_path():
    cfg = load_dictionary(TRANSCODER).cfg
    assert (cfg.kind, cfg.hookpoint, cfg.out_hookpoint, cfg.model) == (
        "transcoder", "model.layers.3.pre_feedforward_layernorm", "model.layers.3.post_feedforward_layernorm",
        "google/gemma-2-2b")
    assert not cfg.apply_b_dec_to_input and not cfg.skip


def test_hugging_face_cache_paths(tmp_path):
    for repo, kind, hookpoint in (("models--google--gemma-scope-2b-pt-transcoders", "transcoder",
                                   "model.layers.17.pre_feedforward_layernorm"),
                                  ("models--google--gemma-scope-2b-pt-res", "sae", "resid_post.17")):
        target = tmp_path / repo / "snapshots/0123abc/layer_17/width_16k/average_l0_8"
        target.mkdir(parents=True)
        shutil.copy(TRANSCODER / "params.npz", target / "params.npz")
        cfg = load_dictionary(target).cfg
        assert (cfg.kind, cfg.hookpoint, cfg.model) == (kind, hookpoint, "google/gemma-2-2b")
        assert gemmascope.hookpoint_and_model(target / "params.npz") == (hookpoint, "google/gemma-2-2b")


def test_explicit_kind_overrides_the_path(tmp_path):
    local = tmp_path / "my-download/layer_5/width_16k/average_l0_8"  # a --local-dir that does not name the release
    local.mkdir(parents=True)
    shutil.copy(TRANSCODER / "params.npz", local / "params.npz")
    assert load_dictionary(local).cfg.kind == "sae"
    cfg = gemmascope.load(local, kind="transcoder").cfg
    assert (cfg.kind, cfg.hookpoint, cfg.out_hookpoint) == (
        "transcoder", "model.layers.5.pre_feedforward_layernorm", "model.layers.5.post_feedforward_layernorm")
    assert gemmascope.load(TRANSCODER, kind="sae").cfg.kind == "sae"
    with pytest.raises(ConfigError, match=r"kind \(Gemma Scope\): got 'crosscoder'.*sae, transcoder"):
        gemmascope.load(TRANSCODER, kind="crosscoder")


def test_same_arrays_as_an_sae_encode_alike():
    """A transcoder differs from an SAE only in where it reads and writes: the maths is the same."""
    x = torch.randn(5, 64)
    tc, sae = gemmascope.load(TRANSCODER), gemmascope.load(TRANSCODER, kind="sae")
    torch.testing.assert_close(tc(x).x_hat, sae(x).x_hat, rtol=0, atol=0)


def _tiny_gemma2():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma2Config(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=64,
                       attn_implementation="eager")
    return Gemma2ForCausalLM(cfg).eval()


def test_splice_replaces_the_mlp_output_of_gemma2():
    """Spliced at post_feedforward_layernorm, the exact MLP (norm in, post-norm out) leaves the loss
    unchanged; zeros there change it; the Gemma Scope transcoder's output runs through."""
    from saelab.evals.downstream import DownstreamStats, downstream_batch
    from saelab.models.hookpoints import resolve_hookpoint

    model = _tiny_gemma2()
    layer = model.model.layers[1]
    hp_in = resolve_hookpoint(model, "model.layers.1.pre_feedforward_layernorm")
    hp_out = resolve_hookpoint(model, "model.layers.1.post_feedforward_layernorm")
    tokens = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(tokens, dtype=torch.bool)

    exact = DownstreamStats()
    x_in, x_out = downstream_batch(model, hp_in, hp_out, lambda x: layer.post_feedforward_layernorm(layer.mlp(x)),
                                   tokens, mask, exact)
    with torch.inference_mode():  # x_in, x_out are inference tensors
        torch.testing.assert_close(layer.post_feedforward_layernorm(layer.mlp(x_in)), x_out)
    result = exact.result()
    assert result["kl_with_reconstruction"] == pytest.approx(0, abs=1e-6)
    assert result["kl_zero_ablation"] > 1e-4

    coder = load_dictionary(TRANSCODER)
    assert resolve_hookpoint(model, coder.cfg.out_hookpoint.replace(".3.", ".1.")) == hp_out
    stats = DownstreamStats()
    downstream_batch(model, hp_in, hp_out, lambda x: coder(x.flatten(0, 1)).x_hat.view_as(x), tokens, mask, stats)
    assert stats.n == 22 and stats.kl_spliced > 0
