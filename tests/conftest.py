"""Shared fixtures: tiny random Llama / Gemma 2 / Gemma 3 models with an offline word-level tokenizer.

Tiny models are built from configs in memory: no download, a forward in milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there been one all we their has would when if so no will can more out up into do "
         "time only about other new some could these two may first then any like now my such make over our even "
         "most me state after also made many did must before back see through way where get much go well your know "
         "should down work year because come people just say each those take day good how long own too little use "
         "war government president congress nation people music film city water king church world").split()


def make_tokenizer(prepend_bos: bool = False, extra_words: tuple[str, ...] = ()):
    """A word-level fast tokenizer with specials <s>, </s>, <unk>; optional BOS prepending and extra words
    in the model's own vocabulary (a tokenizer that cuts text differently)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for w in dict.fromkeys(WORDS + list(".,;:!?") + list(extra_words)):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    if prepend_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for the tiny models: on a busy 2-core machine, two OpenMP threads
    spin against other processes and a 5 ms forward takes 300 ms."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _wrap(model, tokenizer, spec):
    from saelab.models.load import LoadedModel

    model.eval().requires_grad_(False)
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, path=spec, dtype=torch.float32,
                       device=torch.device("cpu"))


def _tiny(model_cls, config_cls, tok, spec: str, **config):
    """A random model (seed 0) over `tok`'s vocabulary, wrapped as saelab loads models. Every tiny model here
    has 4 attention heads (2 key/value), 128 positions and the tokenizer's BOS / EOS; `config` says the rest."""
    torch.manual_seed(0)
    model = model_cls(config_cls(vocab_size=len(tok), num_attention_heads=4, num_key_value_heads=2,
                                 max_position_embeddings=128, eos_token_id=2, bos_token_id=1, **config))
    return _wrap(model, tok, spec)


def _visible_norms(lm, around: float):
    """Norm scales drawn around their identity value (N(around, 0.5)): at init they multiply by 1, and a
    format that drops or misplaces a norm would go unseen."""
    for name, p in lm.model.named_parameters():
        if "layernorm" in name:
            p.data.normal_(around, 0.5)
    return lm


@pytest.fixture(scope="session")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    return _tiny(LlamaForCausalLM, LlamaConfig, make_tokenizer(), "tiny-llama", hidden_size=32, intermediate_size=64,
                 num_hidden_layers=4, tie_word_embeddings=True)


@pytest.fixture(scope="session")
def tiny_gemma3():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    return _tiny(Gemma3ForCausalLM, Gemma3TextConfig, make_tokenizer(prepend_bos=True), "tiny-gemma3",
                 hidden_size=32, intermediate_size=64, num_hidden_layers=4, head_dim=8, sliding_window=16,
                 pad_token_id=0)


@pytest.fixture(scope="session")
def tiny_gemma2():
    """Gemma 2 layout (Gemma Scope's model): four norms per layer, 3 layers of width 64."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    lm = _tiny(Gemma2ForCausalLM, Gemma2Config, make_tokenizer(prepend_bos=True), "tiny-gemma2", hidden_size=64,
               intermediate_size=128, num_hidden_layers=3, head_dim=16, query_pre_attn_scalar=16, sliding_window=16,
               pad_token_id=0, attn_implementation="eager")
    return _visible_norms(lm, around=0.0)  # Gemma stores a norm's scale as an offset from 1


@pytest.fixture(scope="session")
def tiny_llama3():
    """Llama 3 layout (Llama Scope's model: llama3 RoPE scaling), 3 layers of width 64."""
    from transformers import LlamaConfig, LlamaForCausalLM

    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    lm = _tiny(LlamaForCausalLM, LlamaConfig, make_tokenizer(prepend_bos=True), "tiny-llama3", hidden_size=64,
               intermediate_size=128, num_hidden_layers=3, rope_parameters=rope)
    return _visible_norms(lm, around=1.0)


@pytest.fixture(params=["tiny_llama", "tiny_gemma3"])
def tiny_model(request):
    return request.getfixturevalue(request.param)


def english(n_docs: int = 30, seed: int = 0) -> list[str]:
    """Random sentences from the tokenizer's vocabulary (lengths vary per document)."""
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 80))) + " ." for _ in range(n_docs)]


def corpus_file(directory: Path, n_docs: int = 200) -> Path:
    """`directory`/corpus.txt: `english` documents separated by blank lines, a corpus the CLI reads."""
    path = directory / "corpus.txt"
    path.write_text("\n\n".join(english(n_docs)), encoding="utf-8")
    return path


def save_model(lm, directory: Path) -> str:
    """A tiny model (a LoadedModel) and its tokenizer saved as a model directory that `--model` loads."""
    lm.model.save_pretrained(directory)
    lm.tokenizer.save_pretrained(directory)
    return str(directory)


def run_cli(*args) -> int:
    """`saelab ARGS` in-process; its exit code (0 done, 2 a user error). Output is left to capsys."""
    from saelab.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


@pytest.fixture
def small_corpus():
    from saelab.data.corpus import Corpus, Document

    texts = english()
    return Corpus("test-corpus", lambda: [Document(t, "test", str(i)) for i, t in enumerate(texts)])
