import pytest
import torch

from saelab.activations import ActivationReader
from saelab.errors import HookpointError
from saelab.models import list_hookpoints, resolve_hookpoint


@pytest.mark.parametrize("alias,module,side", [
    ("resid_post.2", "model.layers.2", "output"),
    ("blocks.2.hook_resid_post", "model.layers.2", "output"),
    ("layers.2", "model.layers.2", "output"),
    ("resid_pre.2", "model.layers.2", "input"),
    ("blocks.2.hook_resid_pre", "model.layers.2", "input"),
    ("mlp_out.1", "model.layers.1.mlp", "output"),
    ("blocks.1.hook_mlp_out", "model.layers.1.mlp", "output"),
    ("layers.1.mlp", "model.layers.1.mlp", "output"),
    ("mlp_in.1", "model.layers.1.mlp", "input"),
    ("attn_out.3", "model.layers.3.self_attn", "output"),
    ("blocks.0.ln1.hook_normalized", "model.layers.0.input_layernorm", "output"),
    ("model.layers.2.mlp:input", "model.layers.2.mlp", "input"),
    ("ln_final.hook_normalized", "model.norm", "output"),
])
def test_aliases_resolve_to_module_paths(tiny_llama, alias, module, side):
    hp = resolve_hookpoint(tiny_llama.model, alias)
    assert (hp.module, hp.side) == (module, side)


def test_ln2_is_the_norm_that_feeds_the_mlp(tiny_llama, tiny_gemma3):
    assert (resolve_hookpoint(tiny_llama.model, "blocks.1.ln2.hook_normalized").module
            == "model.layers.1.post_attention_layernorm")
    assert (resolve_hookpoint(tiny_gemma3.model, "blocks.1.ln2.hook_normalized").module
            == "model.layers.1.pre_feedforward_layernorm")
    # Gemma 3 has Gemma 2's sandwich norms: mlp_out is what is added to the residual stream
    assert resolve_hookpoint(tiny_gemma3.model, "mlp_out.1").module == "model.layers.1.post_feedforward_layernorm"


def test_alias_and_module_path_give_the_same_tensor(tiny_model):
    ids = torch.randint(3, len(tiny_model.tokenizer), (2, 12))
    mlp_out = resolve_hookpoint(tiny_model.model, "mlp_out.2").module  # after the post-MLP norm on Gemma
    names = ["resid_post.1", "model.layers.1", "blocks.2.hook_mlp_out", mlp_out]
    acts = ActivationReader(tiny_model.model, names[:1] + names[2:3])(ids)
    acts2 = ActivationReader(tiny_model.model, names[1:2] + names[3:4])(ids)
    assert torch.equal(acts["model.layers.1"], acts2["model.layers.1"])
    assert torch.equal(acts[mlp_out], acts2[mlp_out])


def test_resid_pre_of_a_layer_is_resid_post_of_the_previous(tiny_model):
    ids = torch.randint(3, len(tiny_model.tokenizer), (2, 12))
    acts = ActivationReader(tiny_model.model, ["resid_post.1", "resid_pre.2"])(ids)
    assert torch.equal(acts["model.layers.1"], acts["model.layers.2:input"])


def test_unknown_hookpoint_lists_valid_names(tiny_llama):
    with pytest.raises(HookpointError, match=r"resid_post\.0-3"):
        resolve_hookpoint(tiny_llama.model, "resid_mid.2")
    with pytest.raises(HookpointError, match="layers 0–3"):
        resolve_hookpoint(tiny_llama.model, "resid_post.4")
    assert "resid_post.0-3" in list_hookpoints(tiny_llama.model)
