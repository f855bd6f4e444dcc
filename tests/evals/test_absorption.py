"""First-letter absorption: the calculator on planted structure, the prompt reader, run_absorption end to end."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from saelab.activations.capture import ActivationReader
from saelab.coders.base import CoderConfig, SparseCoder
from saelab.errors import ConfigError
from saelab.evals.absorption import AbsorptionConfig, run_absorption, score_absorption, word_absorption
from saelab.evals.absorption_data import LETTERS, PrefixReader, alpha_words, icl_prefix, split_words

S = LETTERS.index("s")
FAST = AbsorptionConfig(probe_batch_size=128, probe_epochs=20, k_sparse_epochs=20, batch_size=64)


# -- the calculator on hand-built words ---------------------------------------------------------------

def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def _basis(d: int = 8) -> torch.Tensor:
    return torch.eye(d)


def test_clean_word_has_no_absorption():
    e = _basis()
    acts = (2 * e[0])[None]  # the probe direction is e0; the main latent 0 carries all of it
    latents = torch.tensor([[2.0, 0.0, 0.0]])
    W_dec = torch.stack([e[0], e[1], e[2]])
    fraction, full = word_absorption(acts, latents, e[0], W_dec, [0])
    assert fraction.tolist() == [0.0] and full.tolist() == [False]


def test_silent_main_latent_with_aligned_word_latent_is_full_absorption():
    e = _basis()
    acts = (2 * e[0] + 2 * e[3])[None]
    W_dec = torch.stack([e[0], _unit(e[0] + e[3]), e[2]])  # latent 1: word-specific, cos 0.71 with the probe
    latents = torch.tensor([[0.0, 2 * 2 ** 0.5, 0.0]])  # main latent 0 silent; latent 1 reconstructs the word
    fraction, full = word_absorption(acts, latents, e[0], W_dec, [0])
    assert fraction.item() == pytest.approx(1.0) and full.item()


def test_partial_absorption_is_a_fraction_and_not_full():
    e = _basis()
    acts = (2 * e[0])[None]
    W_dec = torch.stack([e[0], _unit(e[0] + e[3])])
    latents = torch.tensor([[1.0, 2 ** 0.5]])  # main carries 1 of 2, the absorber the other 1
    fraction, full = word_absorption(acts, latents, e[0], W_dec, [0])
    assert fraction.item() == pytest.approx(0.5) and not full.item()


def test_absorber_needs_cosine_and_share_of_projection():
    e = _basis()
    acts = (2 * e[0])[None]
    weak = _unit(0.05 * e[0] + e[3])  # cos 0.05 < 0.1: cannot compensate; >= 0.025: can be the full absorber
    W_dec = torch.stack([e[0], weak])
    latents = torch.tensor([[0.0, 2 / float(weak[0])]])
    fraction, full = word_absorption(acts, latents, e[0], W_dec, [0])
    assert fraction.item() == 0.0 and full.item()
    small = torch.tensor([[0.0, 0.5 / float(weak[0])]])  # carries 0.25 of the projection < 0.4
    fraction, full = word_absorption(acts, small, e[0], W_dec, [0])
    assert fraction.item() == 0.0 and not full.item()


def test_no_probe_signal_means_no_absorption():
    e = _basis()
    acts = (-1 * e[0])[None]
    W_dec = torch.stack([e[0], _unit(e[0] + e[3])])
    fraction, full = word_absorption(acts, torch.tensor([[0.0, 3.0]]), e[0], W_dec, [0])
    assert fraction.item() == 0.0 and not full.item()


def test_projection_is_invariant_to_decoder_row_scale():
    e = _basis()
    acts = (2 * e[0] + 2 * e[3])[None]
    W_dec = torch.stack([e[0], _unit(e[0] + e[3])])
    latents = torch.tensor([[0.5, 2.0]])
    a = word_absorption(acts, latents, e[0], W_dec, [0])
    b = word_absorption(acts, latents / torch.tensor([1.0, 4.0]), e[0], W_dec * torch.tensor([[1.0], [4.0]]), [0])
    assert torch.allclose(a[0], b[0]) and torch.equal(a[1], b[1])


# -- the whole scoring on planted activations and a planted SAE -----------------------------------------

N_ABSORBED = 8
D_IN = 26 + N_ABSORBED + 30  # letter dims, one marker dim per absorbed word, noise dims


def _planted_words(n_per_letter: int, absorbed: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x = 3 e_letter + noise; the first `absorbed` s-words also carry their own marker dim."""
    gen = torch.Generator().manual_seed(seed)
    letters = torch.arange(26).repeat_interleave(n_per_letter)
    x = torch.zeros(len(letters), D_IN)
    x[torch.arange(len(letters)), letters] = 3.0
    x[:, 26 + N_ABSORBED:] = 0.1 * torch.randn(len(letters), D_IN - 26 - N_ABSORBED, generator=gen)
    s_rows = (letters == S).nonzero().squeeze(1)[:absorbed]
    x[s_rows, 26 + torch.arange(absorbed)] = 3.0
    return x, letters


def _planted_sae(absorbing: bool) -> SparseCoder:
    """Latent L reads and writes e_L. Marker latent j reads its marker; absorbing: it writes
    unit(e_s + g_j) and the s latent is switched off by the markers; clean: it writes g_j."""
    coder = SparseCoder(CoderConfig(architecture="relu", d_in=D_IN, d_sae=26 + N_ABSORBED, apply_b_dec_to_input=False))
    e = torch.eye(D_IN)
    W_enc, W_dec = torch.zeros(D_IN, coder.d_sae), torch.zeros(coder.d_sae, D_IN)
    W_enc[:26, :26], W_dec[:26] = torch.eye(26), e[:26]
    for j in range(N_ABSORBED):
        g = e[26 + j]
        W_enc[:, 26 + j] = g
        W_dec[26 + j] = _unit(e[S] + g) if absorbing else g
        if absorbing:
            W_enc[:, S] -= 2 * g
    with torch.no_grad():
        coder.W_enc.copy_(W_enc), coder.W_dec.copy_(W_dec), coder.b_enc.zero_(), coder.b_dec.zero_()
    return coder


@pytest.fixture(scope="module")
def planted():
    train = _planted_words(40, absorbed=0, seed=0)
    test = _planted_words(30, absorbed=N_ABSORBED, seed=1)
    names = [f"w{i}" for i in range(len(test[1]))]
    return train, test, names


@pytest.mark.parametrize("absorbing", [True, False])
def test_planted_absorption_is_found_and_clean_sae_scores_zero(planted, absorbing):
    (train_x, train_y), (test_x, test_y), names = planted
    res = score_absorption(train_x, train_y, test_x, test_y, _planted_sae(absorbing), FAST, test_words=names)
    assert res["n_qualifying_letters"] == 26 and res["enough_letters"] and res["note"] is None
    rows = {r["letter"]: r for r in res["letters"]}
    assert all(r["main_latents"] == [LETTERS.index(r["letter"])] for r in rows.values())
    assert all(r["absorption_fraction"] == 0 and r["full_absorption_rate"] == 0 for k, r in rows.items() if k != "s")
    s = rows["s"]
    assert s["n_probe_true_positives"] == 30
    if absorbing:
        planted_words = {names[int(i)] for i in (test_y == S).nonzero().squeeze(1)[:N_ABSORBED]}
        assert s["n_full_absorption"] == N_ABSORBED and set(s["absorbed_words"]) == planted_words
        assert s["absorption_fraction"] == pytest.approx(N_ABSORBED / 30, abs=1e-3)
        assert res["mean_absorption_fraction"] == pytest.approx(N_ABSORBED / 30 / 26, abs=1e-3)
    else:
        assert s["n_full_absorption"] == 0 and s["absorption_fraction"] == 0 and res["mean_absorption_fraction"] == 0


def test_few_qualifying_letters_give_a_note_not_a_score(planted):
    (train_x, train_y), (test_x, test_y), _ = planted
    blurred = train_x.clone()
    blurred[:, 5:26] = 0  # letters f..z become unreadable: only a..e can qualify
    test_blurred = test_x.clone()
    test_blurred[:, 5:26] = 0
    res = score_absorption(blurred, train_y, test_blurred, test_y, _planted_sae(False), FAST)
    assert res["n_qualifying_letters"] < 20 and not res["enough_letters"]
    assert "not comparable" in res["note"] and f"{res['n_qualifying_letters']} letters" in res["note"]


def test_dictionary_blind_to_letters_is_flagged(planted):
    (train_x, train_y), (test_x, test_y), _ = planted
    coder = SparseCoder(CoderConfig(architecture="relu", d_in=D_IN, d_sae=30, apply_b_dec_to_input=False))
    with torch.no_grad():  # every latent reads and writes a noise dim: none tracks a letter
        coder.W_enc.zero_()[26 + N_ABSORBED:, :] = torch.eye(30)
        coder.W_dec.zero_()[:, 26 + N_ABSORBED:] = torch.eye(30)
        coder.b_enc.zero_(), coder.b_dec.zero_()
    res = score_absorption(train_x, train_y, test_x, test_y, coder, dataclasses.replace(FAST, max_k=3))
    assert res["enough_letters"] and res["n_letters_weak_main_latents"] == 26
    assert "measure noise" in res["note"]


# -- words, prompts and the cached-prefix reader ------------------------------------------------------

def letter_tokenizer(per_letter: int = 30, seed: int = 0):
    """Byte-level word tokenizer: " has the first letter:" pieces, " A".." Z", and random words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(seed)
    words = [c + "".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 6)))
             for c in LETTERS for _ in range(per_letter)]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "Ċ": 3, ":": 4}
    for w in ["has", "the", "first", "letter", *LETTERS.upper(), *words]:
        vocab.setdefault("Ġ" + w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def letter_llama():
    """A tiny random Llama whose word embeddings hold their first letter (4 e_letter + noise)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from saelab.models.load import LoadedModel

    torch.manual_seed(0)
    tok = letter_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, eos_token_id=2,
                      bos_token_id=1, initializer_range=0.01)
    model = LlamaForCausalLM(cfg).eval().requires_grad_(False)
    emb = model.model.embed_tokens.weight
    emb.normal_(0, 0.1)
    for w in alpha_words(tok):
        emb[w.token_id, w.letter] += 4.0
    return LoadedModel(model, tok, "letter-llama", "letter-llama", torch.float32, torch.device("cpu"))


def test_words_are_single_token_space_words_split_disjointly(letter_llama):
    words = alpha_words(letter_llama.tokenizer)
    assert len(words) >= 26 * 25 and all(w.text[0] == " " and w.text[1:].isalpha() for w in words)
    assert {w.text.strip().upper() for w in words}.isdisjoint(set(LETTERS.upper()))  # " A" is a letter, not a word
    train, test = split_words(words, 0.2, seed=42)
    assert {w.token_id for w in train}.isdisjoint(w.token_id for w in test)
    assert len(train) + len(test) == len(words) and len(test) == round(0.2 * len(words))


def test_prompt_matches_saebench_format(letter_llama):
    words = alpha_words(letter_llama.tokenizer)[:2]
    text = icl_prefix(words, "{word} has the first letter:", " {LETTER}", "\n")
    a, b = words
    assert text == (f"{a.text} has the first letter: {a.text[1].upper()}\n"
                    f"{b.text} has the first letter: {b.text[1].upper()}\n")


def test_cached_prefix_reads_what_a_full_forward_reads(tiny_model):
    hookpoint = "model.layers.2"
    prefix = [5, 7, 9, 11, 13, 5, 7, 9, 11, 13] * 3 + [8]  # longer than the tiny Gemma's sliding window
    words = [20, 30, 40, 50]
    acts, n_tokens = PrefixReader(tiny_model.model, hookpoint).read_after_prefix(prefix, words)
    full = ActivationReader(tiny_model.model, [hookpoint])(torch.tensor([prefix + [w] for w in words]))
    assert n_tokens == len(prefix) + len(words)
    assert torch.allclose(acts, next(iter(full.values()))[:, -1], atol=1e-5)


# -- run_absorption end to end ------------------------------------------------------------------------

def _letter_sae(d: int = 64) -> SparseCoder:
    """Latent L reads and writes e_L (the clean answer for letter_llama); 38 more latents on other dims."""
    coder = SparseCoder(CoderConfig(architecture="relu", d_in=d, d_sae=d, hookpoint="model.layers.0",
                                    apply_b_dec_to_input=False))
    with torch.no_grad():
        coder.W_enc.copy_(torch.eye(d)), coder.W_dec.copy_(torch.eye(d)), coder.b_enc.zero_(), coder.b_dec.zero_()
    return coder


def test_run_absorption_end_to_end(letter_llama):
    # small probe batches: ~600 training words need more optimiser steps than SAEBench's 4096-word batches
    config = AbsorptionConfig(probe_batch_size=64, probe_epochs=20, k_sparse_epochs=20, batch_size=64)
    res = run_absorption(letter_llama, _letter_sae(), config, progress=False)
    n_words = len(alpha_words(letter_llama.tokenizer))
    assert res["n_words"] == res["n_prompts"] == res["n_train_words"] + res["n_test_words"] == n_words
    assert res["n_tokens"] > res["n_words"] and res["n_icl_prefixes"] >= 2 and res["seconds"] > 0
    assert res["enough_letters"] and res["n_qualifying_letters"] >= 20 and res["note"] is None
    assert res["mean_full_absorption_rate"] == 0 and res["mean_absorption_fraction"] == 0
    assert res["n_letters_weak_main_latents"] == 0
    q = [r for r in res["letters"] if r["qualifies"]]
    assert all(LETTERS.index(r["letter"]) in r["main_latents"] for r in q)
    assert all(r["main_latents"] is None for r in res["letters"] if not r["qualifies"])


def test_dictionary_width_must_match_hookpoint(letter_llama):
    coder = SparseCoder(CoderConfig(architecture="topk", d_in=32, d_sae=64, k=4, hookpoint="model.layers.0"))
    with pytest.raises(ConfigError, match=r"d_in is 32 .* width 64"):
        run_absorption(letter_llama, coder, FAST, progress=False)


def test_transcoder_is_refused(letter_llama):
    coder = SparseCoder(CoderConfig(architecture="topk", d_in=64, d_sae=64, k=4, kind="transcoder", d_out=64,
                                    hookpoint="model.layers.0", out_hookpoint="model.layers.1"))
    with pytest.raises(ConfigError, match="kind 'sae'"):
        run_absorption(letter_llama, coder, FAST, progress=False)


def test_tokenizer_without_words_is_a_clear_error(tiny_llama):
    coder = SparseCoder(CoderConfig(architecture="topk", d_in=32, d_sae=64, k=4, hookpoint="model.layers.1"))
    with pytest.raises(ConfigError, match="single-token words"):
        run_absorption(tiny_llama, coder, FAST, progress=False)


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="prompt_template"):
        AbsorptionConfig(prompt_template="no placeholder")
    with pytest.raises(ConfigError, match="test_fraction"):
        AbsorptionConfig(test_fraction=1.0)
