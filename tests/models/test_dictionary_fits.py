"""A dictionary whose widths differ from the model's at its hookpoints is refused, naming both numbers,
before the run it would spoil does any forward."""

import pytest

from saelab.activations import check_dictionary_fits, hookpoint_widths
from saelab.coders import CoderConfig, SparseCoder
from saelab.errors import ConfigError


def _sae(d_in, hookpoint="resid_post.1", **kw):
    return SparseCoder(CoderConfig("topk", d_in=d_in, d_sae=8, k=2, hookpoint=hookpoint, **kw))


def test_widths_are_read_at_each_hookpoint(tiny_gemma2, tiny_llama):
    got = hookpoint_widths(tiny_gemma2.model, ["resid_post.2", "mlp_out.0", "model.layers.1.mlp.down_proj:input"])
    assert got == {"model.layers.2": 64, "model.layers.0.post_feedforward_layernorm": 64,
                   "model.layers.1.mlp.down_proj:input": 128}
    assert hookpoint_widths(tiny_llama.model, ["L3R"]) == {"model.layers.3": 32}


def test_a_dictionary_that_fits_passes(tiny_gemma2):
    check_dictionary_fits(_sae(64), tiny_gemma2)
    tc = SparseCoder(CoderConfig("topk", d_in=64, d_sae=8, k=2, d_out=64, kind="transcoder",
                                 hookpoint="blocks.1.ln2.hook_normalized", out_hookpoint="blocks.1.hook_mlp_out"))
    check_dictionary_fits(tc, tiny_gemma2.model)


def test_another_models_dictionary_is_refused_with_both_widths(tiny_gemma2):
    with pytest.raises(ConfigError, match=r"'gemmascope-l1' does not fit tiny-gemma2 at its hookpoint resid_post\.1 "
                                          r"\(model\.layers\.1\): its d_in is 2304.* width 64.*google/gemma-2-2b"):
        check_dictionary_fits(_sae(2304, model="google/gemma-2-2b"), tiny_gemma2, "gemmascope-l1")


def test_a_transcoder_is_checked_at_both_ends(tiny_gemma2):
    tc = SparseCoder(CoderConfig("topk", d_in=64, d_sae=8, k=2, d_out=48, kind="transcoder", apply_b_dec_to_input=False,
                                 hookpoint="mlp_in.1", out_hookpoint="mlp_out.1"))
    with pytest.raises(ConfigError, match=r"mlp_out\.1 \(model\.layers\.1\.post_feedforward_layernorm\): "
                                          r"its d_out is 48.*width 64"):
        check_dictionary_fits(tc, tiny_gemma2)


@pytest.fixture
def windows(tiny_llama, small_corpus):
    from saelab.data import TokenizeConfig, tokenize_corpus

    return tokenize_corpus(small_corpus, tiny_llama.tokenizer, TokenizeConfig(ctx_len=16, n_tokens=160))


def _no_stream(*a, **kw):
    raise AssertionError("the run streamed activations before checking the dictionary")


def test_latent_cache_refuses_before_streaming(tiny_llama, windows, tmp_path, monkeypatch):
    import importlib

    latents_run = importlib.import_module("saelab.latents.run")
    from saelab.latents.config import CacheConfig
    from saelab.workspace import Workspace

    monkeypatch.setattr(latents_run, "stream_activations", _no_stream)
    with pytest.raises(ConfigError, match=r"'wrong' does not fit tiny-llama.*d_in is 64.*width 32"):
        latents_run.run(CacheConfig(batch_size=2, shard_windows=4), Workspace(tmp_path), tiny_llama, windows,
                        {"wrong": _sae(64)}, progress=False)


def test_eval_refuses_before_any_forward(tiny_llama, windows, monkeypatch):
    from saelab.evals import evaluate
    from saelab.evals.config import EvalConfig
    from saelab.evals.reconstructors import CoderReconstructor

    monkeypatch.setattr(evaluate, "stream_activations", _no_stream)
    monkeypatch.setattr(evaluate, "downstream_batch", _no_stream)
    with pytest.raises(ConfigError, match=r"'wrong'.*d_in 64 ≠ width 32"):
        evaluate.evaluate_many([CoderReconstructor(_sae(64), "wrong")], tiny_llama, windows,
                               EvalConfig(n_tokens=32, ce_n_tokens=16), progress=False)
