"""Words, ICL prompts and activations for the first-letter absorption task.

SAEBench (Chanin et al. 2024, "A is for Absorption") reads the model at the token of a word
inside a few-shot prompt:

    " tree has the first letter: T\\n ocean has the first letter: O\\n ... \\n cat has the first letter:"

and takes the activation at " cat" (position -6 for this template). Attention is causal, so
what follows the word cannot change its activation: we stop the prompt at the word. All the
words of one batch share one freshly drawn set of ICL examples (SAEBench draws one per word);
the examples' keys and values are computed once (KV cache) and the batch's words are read in
one forward of length 1 that stops at the hookpoint. This gives, for every word, exactly the
activation a full forward of `prefix + word` gives (tested), at ~1/80 of the cost.
"""

from __future__ import annotations

import copy
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from ..activations.capture import ActivationReader, StopForward
from ..errors import ConfigError

log = logging.getLogger(__name__)

LETTERS = "abcdefghijklmnopqrstuvwxyz"
MIN_WORDS = 100
"""Fewer single-token words than this cannot train a 26-way probe: `alpha_words` raises."""


@dataclass(frozen=True)
class Word:
    """One single-token word of the model's vocabulary."""

    token_id: int
    text: str
    """The decoded token, leading space included (" cat"), as it appears in the prompt."""
    letter: int
    """Index of its first letter in LETTERS (case-insensitive)."""


def alpha_words(tokenizer: Any) -> list[Word]:
    """Every vocabulary token that decodes to a space then >= 2 ASCII letters (" cat", " Paris").

    These are the word-initial single-token words (SmolLM2: "Ġcat"). Sorted by token id.
    Raises ConfigError when the tokenizer has fewer than MIN_WORDS of them.
    """
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    words = []
    for token, token_id in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        if token_id in special:
            continue
        text = tokenizer.convert_tokens_to_string([token])
        body = text[1:]
        if text.startswith(" ") and len(body) >= 2 and body.isascii() and body.isalpha():
            words.append(Word(int(token_id), text, LETTERS.index(body[0].lower())))
    if len(words) < MIN_WORDS:
        raise ConfigError(
            f"absorption: the tokenizer has {len(words)} single-token words (a space then >= 2 ASCII letters); "
            f"the first-letter task needs at least {MIN_WORDS}. Use a model whose vocabulary holds whole words.")
    return words


def split_words(words: Sequence[Word], test_fraction: float, seed: int,
                max_words: int | None = None) -> tuple[list[Word], list[Word]]:
    """Shuffle by `seed`, keep `max_words` (None: all), split into disjoint (train, test)."""
    shuffled = random.Random(seed).sample(list(words), len(words))
    if max_words is not None:
        shuffled = shuffled[:max_words]
    n_test = max(1, round(len(shuffled) * test_fraction))
    return shuffled[n_test:], shuffled[:n_test]


def icl_prefix(examples: Sequence[Word], template: str, answer_template: str, separator: str) -> str:
    """The few-shot text before the target word: one answered line per example, then the
    template's text up to "{word}". Example: " cat has the first letter: C\\n"."""
    lines = [template.format(word=w.text) + answer_template.format(LETTER=LETTERS[w.letter].upper())
             for w in examples]
    return separator.join(lines) + separator + template.split("{word}")[0]


class PrefixReader(ActivationReader):
    """An `ActivationReader` that can continue from a KV cache, still stopping at the hookpoint."""

    def __init__(self, model: nn.Module, hookpoint: str):
        super().__init__(model, [hookpoint])
        self.name = self.hookpoints[0].name

    @torch.inference_mode()
    def read(self, input_ids: Tensor, cache: Any = None) -> Tensor:
        """input_ids [B, T] (after the cached positions) -> activations [B, T, d]; fills `cache`."""
        store: dict[str, Tensor] = {}
        with self.capturing(store):
            try:
                self.model(input_ids=input_ids, past_key_values=cache, use_cache=cache is not None)
            except StopForward:
                pass
        return store[self.name]

    def read_after_prefix(self, prefix_ids: list[int], word_ids: list[int]) -> tuple[Tensor, int]:
        """Activation at each word placed right after the same prefix.

        Returns (activations [len(word_ids), d], tokens run). The prefix runs once (to the
        hookpoint, filling the KV cache of the layers before it); the words run as one batch of
        length-1 sequences on a copy of that cache.
        """
        from transformers import DynamicCache

        device = next(self.model.parameters()).device
        cache = DynamicCache(config=self.model.config)
        self.read(torch.tensor([prefix_ids], device=device), cache)
        batch_cache = copy.deepcopy(cache)
        batch_cache.batch_repeat_interleave(len(word_ids))
        acts = self.read(torch.tensor(word_ids, device=device)[:, None], batch_cache)  # [B, 1, d]
        return acts[:, -1, :], len(prefix_ids) + len(word_ids)


@dataclass(frozen=True)
class PromptSpec:
    """How the few-shot prompts are written (AbsorptionConfig's prompt fields)."""

    template: str
    answer_template: str
    separator: str
    icl_examples: int
    batch_size: int


def read_word_activations(lm: Any, hookpoint: str, words: Sequence[Word], spec: PromptSpec, rng: random.Random,
                          advance: Callable[[int], None] = lambda n: None) -> tuple[Tensor, dict[str, int]]:
    """Activations at `words` inside ICL prompts whose examples come from `words` themselves.

    Each batch draws `spec.icl_examples` examples from the other words of the list (never a
    word of the batch). Returns (activations [len(words), d] float32 on CPU, counts).
    """
    reader = PrefixReader(lm.model, hookpoint)
    out: list[Tensor] = []
    n_tokens = n_prefixes = 0
    batch_size = min(spec.batch_size, len(words) - spec.icl_examples)
    if batch_size < 1:
        raise ConfigError(f"absorption: {len(words)} words cannot fill {spec.icl_examples} ICL examples plus a "
                          "target; lower icl_examples or use more words.")
    for start in range(0, len(words), batch_size):
        batch = words[start:start + batch_size]
        taken = {w.token_id for w in batch}
        pool = [w for w in words if w.token_id not in taken]
        examples = rng.sample(pool, spec.icl_examples)
        prefix = icl_prefix(examples, spec.template, spec.answer_template, spec.separator)
        prefix_ids = lm.tokenizer(prefix).input_ids
        if start == 0 and lm.tokenizer(prefix + batch[0].text).input_ids != prefix_ids + [batch[0].token_id]:
            log.warning("absorption: this tokenizer splits %r differently inside the prompt; the word is "
                        "inserted as its own token", prefix[-40:] + batch[0].text)
        acts, n = reader.read_after_prefix(prefix_ids, [w.token_id for w in batch])
        out.append(acts.float().cpu())
        n_tokens += n
        n_prefixes += 1
        advance(len(batch))
    return torch.cat(out), {"n_prompts": len(words), "n_icl_prefixes": n_prefixes, "n_tokens": n_tokens}

