"""Choosing one dictionary of a tree by the names its folders carry (Gemma Scope, Llama Scope, sparsify, SAELens)."""

import pytest

from saelab.coders import formats
from saelab.coders.tree import Selector, find_dictionaries, path_facts, select
from saelab.errors import ConfigError, FormatError

GEMMA = [f"layer_{layer}/width_{w}/average_l0_{l0}/params.npz"
         for layer in (12, 20) for w in ("16k", "1m") for l0 in (22, 82, 176)] + ["README.md"]
LLAMA = [f"Llama3_1-8B-Base-L{layer}{site}-8x/{f}" for layer in (15, 16) for site in ("R", "M", "TC")
         for f in ("hyperparams.json", "checkpoints/final.safetensors")]


def pick(files, context="", **sel):
    return select(find_dictionaries(files, formats.FORMATS, context), Selector(**sel), "tree").path


def test_gemma_scope_width_spellings_and_nearest_l0():
    assert pick(GEMMA, layer=20, width="16k", l0="100") == "layer_20/width_16k/average_l0_82"
    assert pick(GEMMA, layer=20, width="16384", l0="150") == "layer_20/width_16k/average_l0_176"
    assert pick(GEMMA, layer=12, width="1m", l0="1") == "layer_12/width_1m/average_l0_22"
    assert pick(GEMMA, layer=12, width="1048576", l0="30") == "layer_12/width_1m/average_l0_22"


def test_llama_scope_layer_site_and_expansion():
    assert pick(LLAMA, layer=16, site="M") == "Llama3_1-8B-Base-L16M-8x"
    assert pick(LLAMA, layer=15, site="transcoder", width="8x") == "Llama3_1-8B-Base-L15TC-8x"
    facts = path_facts("Llama3_1-8B-Base-L15R-8x")
    assert (facts["layer"], facts["site"], facts["width"]) == (15, "res", "8x")


def test_site_from_the_repo_name_and_hookpoint_aliases():
    files = ["layer_3/width_16k/average_l0_8/params.npz"]
    assert path_facts("layer_3/width_16k/average_l0_8", "google/gemma-scope-2b-pt-transcoders")["site"] == "transcoder"
    assert pick(files, "google/gemma-scope-2b-pt-transcoders", site="transcoder", layer=3)
    sparsify = [f"layers.{i}/{f}" for i in (6, 16) for f in ("cfg.json", "sae.safetensors")]
    for alias in ("layers.16", "resid_post.16", "blocks.16.hook_resid_post", "model.layers.16"):
        assert pick(sparsify, hookpoint=alias) == "layers.16"
    assert pick(sparsify, layer=6) == "layers.6"


def test_what_is_refused():
    with pytest.raises(FormatError, match=r"holds 12 dictionaries: layer_12/width_1m/average_l0_22, "
                                          r"layer_12/width_1m/average_l0_82, .*pick one with "
                                          r"--layer, --width, --l0"):
        pick(GEMMA)
    with pytest.raises(FormatError, match=r"no dictionary matches --layer 7 --width 16k; the tree holds 12"):
        pick(GEMMA, layer=7, width="16k")
    with pytest.raises(FormatError, match="no dictionary in any known format"):
        pick(["README.md", "notes/params.txt"])
    for bad in ({"site": "sideways"}, {"l0": "lots"}, {"width": "wide"}):
        with pytest.raises(ConfigError, match=f"{next(iter(bad))}: got"):
            Selector(**bad)
