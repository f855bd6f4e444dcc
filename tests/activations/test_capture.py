import torch

from saelab.activations import ActivationReader


def _count_calls(module):
    calls = []
    handle = module.register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


def test_truncated_forward_equals_full_forward_exactly(tiny_model):
    ids = torch.randint(3, len(tiny_model.tokenizer), (3, 16))
    hps = ["resid_post.1", "blocks.0.hook_mlp_out", "resid_pre.1"]
    early = ActivationReader(tiny_model.model, hps)(ids)
    full = ActivationReader(tiny_model.model, hps, stop_early=False)(ids)
    assert early.keys() == full.keys()
    for name in early:
        assert torch.equal(early[name], full[name]), name
    # and both equal what output_hidden_states reports for the residual stream
    with torch.inference_mode():
        hs = tiny_model.model(input_ids=ids, output_hidden_states=True).hidden_states
    assert torch.equal(early["model.layers.1"], hs[2])


def test_forward_stops_after_the_deepest_hookpoint(tiny_llama):
    model = tiny_llama.model
    later, h1 = _count_calls(model.model.layers[2])
    head, h2 = _count_calls(model.lm_head)
    deepest, h3 = _count_calls(model.model.layers[1])
    try:
        ActivationReader(model, ["resid_post.1", "mlp_out.0"])(torch.randint(3, 50, (1, 8)))
    finally:
        for h in (h1, h2, h3):
            h.remove()
    assert deepest and not later and not head


def test_activations_stream_in_batches_and_cover_every_window(tiny_llama, small_corpus, tmp_path):
    from saelab.activations import StreamConfig, stream_activations
    from saelab.data import TokenizeConfig, tokenize_corpus

    windows = tokenize_corpus(small_corpus, tiny_llama.tokenizer, TokenizeConfig(ctx_len=16, n_tokens=160))
    seen = []
    for batch in stream_activations(tiny_llama, windows, ["resid_post.2"], StreamConfig(batch_size=3), progress=False):
        (name, acts), = batch.acts.items()
        assert acts.shape == (len(batch.windows), 16, 32)
        assert torch.equal(batch.tokens, windows.tokens[batch.windows])
        assert not batch.mask[:, 0].any()  # the sink position is excluded
        seen += batch.windows.tolist()
    assert seen == list(range(windows.n_windows))
