"""Model pairs: refused when not token-aligned; paired windows and resumable paired activations."""

import pytest
import torch

from saelab.activations.capture import ActivationReader
from saelab.diff.pair import (
    PairedActivations,
    check_pair,
    extract_activations_for_comparison,
    paired_windows,
    valid_mask,
    window_groups,
)
from saelab.errors import ArtifactError, ConfigError, ModelError
from tests.conftest import make_tokenizer
from tests.diff._models import CATEGORIES, CHAT_TEMPLATE, corpus_windows, perturbed, tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pair():
    base = tiny_llama()
    return base, perturbed(base, 2)


@pytest.fixture(scope="module")
def windows(pair):
    return paired_windows(corpus_windows(pair[0].tokenizer), pair[0].tokenizer, CATEGORIES)


def test_check_pair_returns_the_layers(pair):
    assert check_pair(*pair, [2, 0, 2]) == [0, 2]
    assert check_pair(*pair) == [0, 1, 2, 3]


def test_different_tokenizers_are_refused_with_the_reason(pair):
    other_vocab = make_tokenizer(extra_words=("zebra",))  # one more piece in the model's own vocabulary
    with pytest.raises(ModelError) as e:
        check_pair(pair[0], tiny_llama(other_vocab, spec="other"), [1])
    msg = str(e.value)
    assert "do not share a tokenizer" in msg and "vocabulary sizes" in msg
    assert "same token" in msg and "one family" in msg


def test_other_special_tokens_are_a_note_not_a_refusal(pair, caplog):
    """Like DeepSeek-R1-Distill-Qwen vs Qwen2: same pieces, renamed or added special tokens."""
    from saelab.diff.pair import tokenizer_notes

    tok = make_tokenizer()
    tok.eos_token = "."
    tok.add_special_tokens({"additional_special_tokens": ["<think>"]})
    with caplog.at_level("WARNING"):
        assert check_pair(pair[0], tiny_llama(tok, spec="other"), [1]) == [1]
    notes = tokenizer_notes(pair[0].tokenizer, tok)
    assert notes[0] == f"eos_token_id 2 vs {tok.convert_tokens_to_ids('.')}"
    assert "1 only in the target" in notes[1] and "<think>" in notes[1]
    assert "eos_token_id" in caplog.text
    assert tokenizer_notes(pair[0].tokenizer, make_tokenizer()) == []
    bos = make_tokenizer(prepend_bos=True)  # adds <s> to every text: the pieces are still the same
    assert check_pair(pair[0], tiny_llama(bos, spec="bos"), [1]) == [1]


def test_different_hidden_sizes_name_the_layer_and_sizes(pair):
    wide = tiny_llama(pair[0].tokenizer, hidden_size=48, spec="wide")
    with pytest.raises(ConfigError, match=r"layer 1: the base model's residual stream has size 32, the target's 48"):
        check_pair(pair[0], wide, [1])


def test_layers_out_of_range_list_the_valid_range(pair):
    with pytest.raises(ConfigError, match=r"got \[4, -1\].*valid layers are 0–3"):
        check_pair(*pair, [1, 4, -1])


def test_paired_windows_label_groups_and_pad_prompts(pair, windows):
    corpus = corpus_windows(pair[0].tokenizer)
    names, group = window_groups(windows)
    assert names == ["corpus", "politics", "arts"]
    assert group.tolist() == [0] * corpus.n_windows + [1, 1, 2, 2]
    assert torch.equal(windows.tokens[: corpus.n_windows], corpus.tokens)
    prompt = windows.tokens[corpus.n_windows].tolist()
    n = len(pair[0].tokenizer("the president and the congress of the nation").input_ids)
    doc = windows.doc_index[corpus.n_windows]
    assert (doc[n:] == -1).all() and (doc[:n] >= 0).all()
    valid = valid_mask(windows)
    assert not valid[corpus.n_windows, n:].any() and valid[corpus.n_windows, 1:n].all()
    assert windows.cfg["prompt_format"] == "plain text" and windows.cfg["n_text_tokens"] == int(valid.sum())
    assert pair[0].tokenizer.decode(prompt[:n]) == "the president and the congress of the nation"


def test_prompts_go_through_the_chat_template_when_there_is_one(pair):
    tok = make_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    w = paired_windows(corpus_windows(tok), tok, {"chat": ["music and film"]})
    assert w.cfg["prompt_format"].startswith("chat template")
    ids = w.tokens[-1][w.doc_index[-1] >= 0].tolist()
    assert tok.decode(ids) == "<s> <unk> : music and film </s> <s> he :"  # "user" is not in the test vocabulary


def _direct(lm, windows, layer):
    reader = ActivationReader(lm.model, [f"resid_post.{layer}"], stop_early=False)
    return next(iter(reader(windows.tokens.long()).values()))  # [n_windows, T, d]


def test_paired_activations_match_a_direct_forward_and_resume(pair, windows, tmp_path):
    out = tmp_path / "acts"
    acts = extract_activations_for_comparison(*pair, windows, [1, 3], out, batch_size=3, dtype=torch.float32,
                                              shard_windows=8, progress=False)
    assert acts.layers == [1, 3] and acts.d_model == 32 and acts.groups == ["corpus", "politics", "arts"]
    assert acts.n_tokens == int(valid_mask(windows).sum())
    for layer in (1, 3):
        direct = [_direct(lm, windows, layer) for lm in pair]
        rows = list(acts.batches_with_meta(layer, 64))
        assert all(r.acts.shape[1:] == (2, 32) and r.acts.dtype == torch.float32 for r in rows)
        assert sum(r.acts.shape[0] for r in rows) == acts.n_tokens
        for r in rows:
            for m in (0, 1):
                torch.testing.assert_close(r.acts[:, m], direct[m][r.window, r.pos], atol=1e-5, rtol=1e-5)
    # layer 1 is upstream of the change: both halves agree; layer 3 is downstream: they differ
    x1, x3 = next(acts.batches(1, 10_000)), next(acts.batches(3, 10_000))
    assert torch.equal(x1[:, 0], x1[:, 1]) and not torch.allclose(x3[:, 0], x3[:, 1])

    shards = sorted(out.glob("layer_*/shard_*.safetensors"))
    assert len(shards) == 2 * 3  # 20 corpus + 4 prompt windows in shards of 8
    kept = {p: p.stat().st_mtime_ns for p in shards}
    shards[1].unlink()
    (out / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest.json missing"):
        PairedActivations(out)
    again = extract_activations_for_comparison(*pair, windows, [1, 3], out, batch_size=3, dtype=torch.float32,
                                               shard_windows=8, progress=False)
    # shard 1 is recomputed (for every layer: a shard is whole only when all its layers are); the others are kept
    assert shards[1].exists() and all(p.stat().st_mtime_ns == t for p, t in kept.items() if "shard_00001" not in p.name)
    assert torch.equal(next(again.batches(3, 10_000)), x3)


def test_shuffled_batches_hold_the_same_rows(pair, windows, tmp_path):
    acts = extract_activations_for_comparison(*pair, windows, [2], tmp_path, shard_windows=5, progress=False)
    ordered = torch.cat(list(acts.batches(2, 50)))
    shuffled = list(acts.batches_with_meta(2, 50, shuffle_seed=0, buffer_shards=2))
    assert [b.acts.shape[0] for b in shuffled[:-1]] == [50] * (len(shuffled) - 1)
    flat = torch.cat([b.acts for b in shuffled])
    assert not torch.equal(flat, ordered)
    key = lambda x: x.flatten(1).sum(1).sort().values  # noqa: E731
    torch.testing.assert_close(key(flat), key(ordered))
    assert next(iter(acts.batches(2, 8))).dtype == torch.float32  # stored bf16, read as float32


def test_a_model_is_known_by_its_weights_not_its_path(pair, windows, tmp_path):
    from dataclasses import replace

    base, target = pair
    extract_activations_for_comparison(base, target, windows, [1], tmp_path, progress=False)
    stamps = lambda: {p: p.stat().st_mtime_ns for p in (tmp_path / "layer_01").iterdir()}  # noqa: E731
    before = stamps()
    moved = replace(base, path="/elsewhere/the-same-model")  # a cache moved: the same weights
    extract_activations_for_comparison(moved, target, windows, [1], tmp_path, progress=False)
    assert before and stamps() == before  # resumed: no shard written again
    with pytest.raises(ArtifactError, match="made differently"):  # other weights under the base's path
        extract_activations_for_comparison(replace(target, path=base.path), target, windows, [1], tmp_path,
                                           progress=False)


def test_other_inputs_are_refused_unless_recomputed(pair, windows, tmp_path):
    extract_activations_for_comparison(*pair, windows, [1], tmp_path, progress=False)
    with pytest.raises(ArtifactError, match="made differently"):
        extract_activations_for_comparison(*pair, windows, [2], tmp_path, progress=False)
    acts = extract_activations_for_comparison(*pair, windows, [2], tmp_path, resume=False, progress=False)
    assert acts.layers == [2] and not (tmp_path / "layer_01").exists()
    with pytest.raises(ConfigError, match="hold layers"):
        next(acts.batches(1, 8))
