"""Aliases of the models published dictionaries read: Gemma 2 (Gemma Scope) and Llama 3 (Llama Scope).

Each alias must name the module the dictionaries were trained on, and the activation saelab
captures there must be the tensor that module computes, also when the forward stops early.
"""

import pytest
import torch

from saelab.activations import ActivationReader
from saelab.errors import HookpointError
from saelab.models import list_hookpoints, resolve_hookpoint

GEMMA2 = [  # TransformerLens names for Gemma 2 (use_normalization_before_and_after=True)
    ("blocks.1.ln1.hook_normalized", "model.layers.1.input_layernorm", "output"),
    ("blocks.1.ln1_post.hook_normalized", "model.layers.1.post_attention_layernorm", "output"),
    ("blocks.1.ln2.hook_normalized", "model.layers.1.pre_feedforward_layernorm", "output"),
    ("blocks.1.ln2_post.hook_normalized", "model.layers.1.post_feedforward_layernorm", "output"),
    ("blocks.1.hook_attn_out", "model.layers.1.post_attention_layernorm", "output"),
    ("attn_out.1", "model.layers.1.post_attention_layernorm", "output"),
    ("blocks.1.hook_mlp_out", "model.layers.1.post_feedforward_layernorm", "output"),
    ("mlp_out.1", "model.layers.1.post_feedforward_layernorm", "output"),
    ("mlp_in.1", "model.layers.1.mlp", "input"),
    ("blocks.1.hook_resid_mid", "model.layers.1.pre_feedforward_layernorm", "input"),
    ("blocks.1.hook_mlp_in", "model.layers.1.pre_feedforward_layernorm", "input"),
    ("blocks.1.hook_resid_post", "model.layers.1", "output"),
    ("resid_post.1", "model.layers.1", "output"),
    ("resid_pre.1", "model.layers.1", "input"),
    ("layers.1.mlp", "model.layers.1.mlp", "output"),
]
LLAMA = [
    ("L1R", "model.layers.1", "output"),
    ("l1r", "model.layers.1", "output"),
    ("L2A", "model.layers.2.self_attn", "output"),
    ("L0M", "model.layers.0.mlp", "output"),
    ("blocks.1.ln2.hook_normalized", "model.layers.1.post_attention_layernorm", "output"),  # L1TC's input
    ("blocks.1.hook_mlp_out", "model.layers.1.mlp", "output"),  # L1TC's output
    ("blocks.1.hook_resid_mid", "model.layers.1.post_attention_layernorm", "input"),
    ("blocks.1.hook_attn_out", "model.layers.1.self_attn", "output"),
]


@pytest.mark.parametrize("alias,module,side", GEMMA2)
def test_gemma2_aliases_resolve_to_gemma_scope_sites(tiny_gemma2, alias, module, side):
    hp = resolve_hookpoint(tiny_gemma2.model, alias)
    assert (hp.module, hp.side) == (module, side)


@pytest.mark.parametrize("alias,module,side", LLAMA)
def test_llama_scope_aliases_resolve(tiny_llama3, alias, module, side):
    hp = resolve_hookpoint(tiny_llama3.model, alias)
    assert (hp.module, hp.side) == (module, side)


def _module_tensors(model, names, ids):
    """What each named module computes (or receives), by hooks placed here, in a full forward."""
    out, handles = {}, []
    for hp in names:
        mod = model.get_submodule(hp.module)
        if hp.side == "input":
            handles.append(mod.register_forward_pre_hook(
                lambda m, a, kw, key=hp.name: out.__setitem__(key, (a[0] if a else kw["hidden_states"]).clone()),
                with_kwargs=True))
        else:
            handles.append(mod.register_forward_hook(
                lambda m, a, o, key=hp.name: out.__setitem__(key, (o[0] if isinstance(o, tuple) else o).clone())))
    try:
        with torch.inference_mode():
            model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return out


@pytest.mark.parametrize("fixture,aliases", [("tiny_gemma2", GEMMA2), ("tiny_llama3", LLAMA)])
@pytest.mark.parametrize("stop_early", [True, False])
def test_captured_activation_is_what_the_module_computes(request, fixture, aliases, stop_early):
    lm = request.getfixturevalue(fixture)
    ids = torch.randint(3, len(lm.tokenizer), (2, 10))
    hps = [resolve_hookpoint(lm.model, a) for a, _, _ in aliases]
    got = ActivationReader(lm.model, hps, stop_early=stop_early)(ids)
    want = _module_tensors(lm.model, hps, ids)
    for hp in hps:
        assert torch.equal(got[hp.name], want[hp.name]), hp.name


def test_gemma2_mlp_out_and_attn_out_are_what_the_residual_stream_adds(tiny_gemma2):
    acts = ActivationReader(tiny_gemma2.model, ["resid_pre.1", "blocks.1.hook_resid_mid", "resid_post.1",
                                                "attn_out.1", "mlp_out.1", "layers.1.mlp"])(
        torch.randint(3, len(tiny_gemma2.tokenizer), (2, 10)))
    pre, mid, post = acts["model.layers.1:input"], acts["model.layers.1.pre_feedforward_layernorm:input"], \
        acts["model.layers.1"]
    attn_out, mlp_out = (acts["model.layers.1.post_attention_layernorm"],
                         acts["model.layers.1.post_feedforward_layernorm"])
    torch.testing.assert_close(mid - pre, attn_out)
    torch.testing.assert_close(post - mid, mlp_out)
    assert not torch.allclose(acts["model.layers.1.mlp"], mlp_out)  # the MLP's own output is before the norm


def test_mlp_in_is_the_norm_that_feeds_the_mlp(tiny_gemma2, tiny_llama3):
    for lm in (tiny_gemma2, tiny_llama3):
        ids = torch.randint(3, len(lm.tokenizer), (2, 10))
        reader = ActivationReader(lm.model, ["mlp_in.2", "blocks.2.ln2.hook_normalized"])
        a, b = reader(ids).values()
        assert torch.equal(a, b)


def test_short_alias_names_the_site_on_each_model(tiny_gemma2, tiny_llama3):
    assert resolve_hookpoint(tiny_gemma2.model, "blocks.2.hook_mlp_out").alias == "mlp_out.2"
    assert resolve_hookpoint(tiny_gemma2.model, "model.layers.2.post_attention_layernorm").alias == "attn_out.2"
    assert resolve_hookpoint(tiny_gemma2.model, "model.layers.2.mlp").alias == "model.layers.2.mlp"
    assert resolve_hookpoint(tiny_llama3.model, "L2M").alias == "mlp_out.2"
    # on Llama the post-attention norm feeds the MLP: it is not attn_out
    assert resolve_hookpoint(tiny_llama3.model, "model.layers.2.post_attention_layernorm").alias \
        == "model.layers.2.post_attention_layernorm"


def test_post_norms_exist_only_where_the_model_has_them(tiny_llama3, tiny_gemma2):
    with pytest.raises(HookpointError, match="no norm after the MLP"):
        resolve_hookpoint(tiny_llama3.model, "blocks.1.ln2_post.hook_normalized")
    with pytest.raises(HookpointError, match="layers 0–2"):
        resolve_hookpoint(tiny_llama3.model, "L3R")
    assert "blocks.0-2.ln2_post.hook_normalized" in list_hookpoints(tiny_gemma2.model)
    assert "blocks.0-2.ln2_post.hook_normalized" not in list_hookpoints(tiny_llama3.model)
