"""Published model-diffing crosscoders (science-of-finetuning dictionary_learning CrossCoder,
crosscoder-model-diff-replication) load as saelab crosscoders and diff like saelab's own.

Fixtures: tests/fixtures/crosscoders/, one random crosscoder written in each layout
(tests/fixtures/make_fixtures.py crosscoders); encode/decode against the library's formula is
checked in test_peer_fixtures.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from saelab.coders import load_dictionary
from saelab.diff.latent_stats import delta_norm, tag_latents
from saelab.errors import FormatError

CROSSCODERS = Path(__file__).resolve().parents[1] / "fixtures" / "crosscoders"
LAYOUTS = ("saelab", "dictionary_learning_crosscoder", "crosscoder_model_diff")
BASE_ONLY, TARGET_ONLY, SHARED = range(0, 6), range(6, 12), range(12, 18)  # as make_fixtures.crosscoder_weights


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_is_a_two_source_crosscoder(layout):
    coder = load_dictionary(CROSSCODERS / layout)
    c = coder.cfg
    assert (c.kind, c.n_sources, c.d_in, c.d_sae, c.source_format) == ("crosscoder", 2, 64, 256, layout)
    assert coder.W_dec.shape == (256, 2, 64) and coder.b_dec.shape == (2, 64)


def test_the_same_weights_get_the_same_delta_norm_tags_in_every_format():
    deltas = {layout: delta_norm(load_dictionary(CROSSCODERS / layout)) for layout in LAYOUTS}
    tags = {layout: tag_latents(d) for layout, d in deltas.items()}
    for layout in LAYOUTS[1:]:
        torch.testing.assert_close(deltas[layout], deltas["saelab"], rtol=0, atol=1e-5)
        assert np.array_equal(tags[layout], tags["saelab"]), layout
    ref = tags["saelab"]
    assert set(ref[list(BASE_ONLY)]) == {"base-only"} and set(ref[list(TARGET_ONLY)]) == {"target-only"}
    assert set(ref[list(SHARED)]) == {"shared"}


def test_dictionary_learning_crosscoder_folds_normalisation_and_code_norms():
    coder = load_dictionary(CROSSCODERS / "dictionary_learning_crosscoder")
    state = load_file(str(CROSSCODERS / "dictionary_learning_crosscoder" / "model.safetensors"))
    extra = coder.cfg.extra
    assert extra["code_normalization"] == "CROSSCODER" and extra["dict_class"] == "BatchTopKCrossCoder"
    # Δnorm in the library's normalised units: activation_scales = 1 / activation_global_scale
    torch.testing.assert_close(torch.tensor(extra["activation_scales"]), 1 / state["activation_global_scale"])
    assert float(coder.threshold) == float(state["threshold"])


def test_dictionary_learning_crosscoder_without_normaliser(tmp_path):
    """Older files (and coders trained without a normaliser) hold NaN or no normaliser buffers."""
    state = load_file(str(CROSSCODERS / "dictionary_learning_crosscoder" / "model.safetensors"))
    for name in ("activation_mean", "activation_std", "activation_global_scale", "target_rms"):
        state.pop(name)
    save_file(state, str(tmp_path / "model.safetensors"))
    shutil.copy(CROSSCODERS / "dictionary_learning_crosscoder" / "config.json", tmp_path / "config.json")
    coder = load_dictionary(tmp_path)
    assert "activation_scales" not in coder.cfg.extra
    x = torch.randn(16, 2, 64)
    f = torch.relu(torch.einsum("bld,ldf->bf", x, state["encoder.weight"]) + state["encoder.bias"])
    c = state["decoder.weight"].norm(dim=2).sum(0)  # CROSSCODER code normalisation [F]
    f = f * (f * c > state["threshold"])
    x_hat = torch.einsum("bf,lfd->bld", f, state["decoder.weight"]) + state["decoder.bias"]
    out = coder(x)
    torch.testing.assert_close(out.latents, f * c, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.x_hat, x_hat, rtol=1e-5, atol=1e-5)


def test_dictionary_learning_crosscoder_trainsae_layout(tmp_path):
    """trainSAE writes model_final.pt + config.json {"trainer": {...}}: the layer and model come from there."""
    state = load_file(str(CROSSCODERS / "dictionary_learning_crosscoder" / "model.safetensors"))
    torch.save(state, tmp_path / "model_final.pt")
    (tmp_path / "config.json").write_text(json.dumps({"trainer": {
        "dict_class": "BatchTopKCrossCoder", "trainer_class": "BatchTopKCrossCoderTrainer", "layer": 13,
        "lm_name": "it-model-base-model", "k": 8, "code_normalization": "CROSSCODER"}}))
    for path in (tmp_path, tmp_path / "model_final.pt"):
        coder = load_dictionary(path)
        assert (coder.cfg.source_format, coder.cfg.hookpoint, coder.cfg.model) == (
            "dictionary_learning_crosscoder", "resid_post.13", "it-model-base-model")
    ref = load_dictionary(CROSSCODERS / "dictionary_learning_crosscoder")
    torch.testing.assert_close(coder.W_dec, ref.W_dec, rtol=0, atol=0)


def test_crosscoder_model_diff_local_checkpoints(tmp_path):
    """CrossCoder.save writes version_V/N.pt + N_cfg.json; the directory reads the last checkpoint."""
    src = CROSSCODERS / "crosscoder_model_diff"
    version = tmp_path / "version_0"
    version.mkdir()
    for n in (0, 1):
        shutil.copy(src / "cc_weights.pt", version / f"{n}.pt")
        shutil.copy(src / "cfg.json", version / f"{n}_cfg.json")
    state = torch.load(version / "1.pt", weights_only=True)
    state["b_enc"] = state["b_enc"] + 1
    torch.save(state, version / "1.pt")
    assert load_dictionary(version).cfg.extra["checkpoint"] == "1.pt"
    first = load_dictionary(version / "0.pt")
    assert first.cfg.source_format == "crosscoder_model_diff"
    torch.testing.assert_close(first.b_enc, load_dictionary(src).b_enc, rtol=0, atol=0)
    # the Hub file itself (a .pt that dictionary_learning would otherwise claim)
    assert load_dictionary(src / "cc_weights.pt").cfg.source_format == "crosscoder_model_diff"


def test_errors_name_the_file_and_what_was_expected(tmp_path):
    dl = tmp_path / "dl"
    shutil.copytree(CROSSCODERS / "dictionary_learning_crosscoder", dl)
    state = load_file(str(dl / "model.safetensors"))
    save_file({**state, "code_normalization_id": torch.tensor(5), "threshold": torch.zeros(2)},
              str(dl / "model.safetensors"))
    with pytest.raises(FormatError, match=r"model\.safetensors: a crosscoder with DECOUPLED"):
        load_dictionary(dl)

    mixed = tmp_path / "mixed"
    shutil.copytree(CROSSCODERS / "crosscoder_model_diff", mixed)
    (mixed / "cfg.json").write_text(json.dumps({"d_in": 32, "dict_size": 256}))
    with pytest.raises(FormatError, match=r"cc_weights\.pt: W_enc has shape \[2, 64, 256\]; cfg\.json says"):
        load_dictionary(mixed)

    # a transformers model (config.json + model.safetensors) is not taken for a crosscoder
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    save_file({"lm_head.weight": torch.zeros(2, 2)}, str(model / "model.safetensors"))
    with pytest.raises(FormatError, match="not a dictionary in any known format"):
        load_dictionary(model)
