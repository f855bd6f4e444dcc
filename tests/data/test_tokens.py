import pytest
import torch

from saelab.data import TokenizeConfig, load_token_windows, save_token_windows, tokenize_corpus
from saelab.errors import ArtifactError, ConfigError


def test_windows_are_deterministic_for_a_seed(tiny_llama, small_corpus):
    tok = tiny_llama.tokenizer
    a = tokenize_corpus(small_corpus, tok, TokenizeConfig(ctx_len=16, n_tokens=200, seed=1))
    b = tokenize_corpus(small_corpus, tok, TokenizeConfig(ctx_len=16, n_tokens=200, seed=1))
    c = tokenize_corpus(small_corpus, tok, TokenizeConfig(ctx_len=16, n_tokens=200, seed=2))
    assert torch.equal(a.tokens, b.tokens) and a.tokens_hash == b.tokens_hash
    assert not torch.equal(a.tokens, c.tokens)
    assert a.tokens.shape == (13, 16) and a.tokens.dtype == torch.int32  # ceil(200 / 16)


def test_documents_are_joined_with_eos_and_tracked(tiny_llama, small_corpus):
    tok = tiny_llama.tokenizer
    w = tokenize_corpus(small_corpus, tok, TokenizeConfig(ctx_len=32, n_tokens=600))
    flat_tok, flat_doc = w.tokens.flatten(), w.doc_index.flatten()
    # every document ends with EOS, and the next token belongs to the next document
    eos_at = (flat_tok == tok.eos_token_id).nonzero().flatten()
    assert len(eos_at) > 3
    for i in eos_at[:-1].tolist():
        if i + 1 < len(flat_doc):
            assert flat_doc[i + 1] == flat_doc[i] + 1
    # doc_index points at the documents table, and the tokens match that document's text
    d0 = w.documents[0]
    text = next(d.text for d in small_corpus if d.doc_id == d0["doc_id"])
    ids = tok(text, add_special_tokens=False).input_ids
    assert flat_tok[: len(ids)].tolist() == ids[: len(flat_tok)]


def test_text_mask_excludes_sink_and_specials(tiny_llama, small_corpus):
    w = tokenize_corpus(small_corpus, tiny_llama.tokenizer, TokenizeConfig(ctx_len=16, n_tokens=200))
    mask = w.text_mask()
    assert not mask[:, 0].any()
    assert not mask[w.tokens == tiny_llama.tokenizer.eos_token_id].any()
    assert mask.sum() == w.cfg["n_text_tokens"]
    assert w.text_mask(exclude=()).all()


def test_bos_models_get_bos_at_every_window(tiny_gemma3, small_corpus):
    tok = tiny_gemma3.tokenizer
    w = tokenize_corpus(small_corpus, tok, TokenizeConfig(ctx_len=16, n_tokens=200))
    assert (w.tokens[:, 0] == tok.bos_token_id).all() and w.cfg["bos_per_window"]


def test_bad_sizes_are_clear_errors(tiny_llama, small_corpus):
    with pytest.raises(ConfigError, match="n_tokens: got 0"):
        TokenizeConfig(n_tokens=0)
    with pytest.raises(ConfigError, match="ctx_len: got 1000, but the model has only 128 positions"):
        tokenize_corpus(small_corpus, tiny_llama.tokenizer, TokenizeConfig(ctx_len=1000, n_tokens=2000),
                        max_positions=128)
    with pytest.raises(ConfigError, match="fewer than one window"):
        tokenize_corpus(small_corpus, tiny_llama.tokenizer, TokenizeConfig(ctx_len=100_000, n_tokens=100_000))


def test_save_load_round_trip_and_tamper_detection(tiny_llama, small_corpus, tmp_path):
    w = tokenize_corpus(small_corpus, tiny_llama.tokenizer, TokenizeConfig(ctx_len=16, n_tokens=200))
    save_token_windows(w, tmp_path / "tokens")
    r = load_token_windows(tmp_path / "tokens")
    assert torch.equal(r.tokens, w.tokens) and torch.equal(r.doc_index, w.doc_index)
    assert r.documents == w.documents and r.tokens_hash == w.tokens_hash
    from safetensors.torch import save_file

    save_file({"tokens": w.tokens.flip(0).contiguous(), "doc_index": w.doc_index},
              str(tmp_path / "tokens" / "tokens.safetensors"))
    with pytest.raises(ArtifactError, match="does not match its cfg.json"):
        load_token_windows(tmp_path / "tokens")
    with pytest.raises(ArtifactError, match="saelab tokens"):
        load_token_windows(tmp_path / "nothing")
