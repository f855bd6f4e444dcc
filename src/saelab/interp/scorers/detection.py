"""`detection`: given the explanation, does the latent fire somewhere in this text?
Scored on the held-out activating examples and the non-activating ones.

The one-example question is the text first, then "Does this text contain <explanation>?". Measured on
Qwen2.5-Coder-1.5B with three explanations × 4 matching and 4 unrelated texts: P(yes) was 0.74–0.93 on
matching texts and 0.09–0.54 on unrelated ones (mean gap 0.60), where the earlier "Explanation: … Text: …
Is the feature present?" form gave 0.28–0.72 against 0.02–0.32 (gap 0.40): both rank each explanation's
texts correctly, but the earlier form answered "no" to every football text for "names of football clubs",
so its F1 and balanced accuracy at P = 0.5 said nothing. The price: with the text first, a latent's
prompts share no long prefix to run once, and those 24 questions took 48 s instead of 39 s (fp32, 2 cores)."""

from __future__ import annotations

import numpy as np

from ..clients.base import Messages
from ..examples import LatentExamples
from ..format import Decode, plain
from .base import Item, Scorer

SYSTEM = "You check texts against a description. Answer with one word: Yes or No."
BATCH_SYSTEM = ("A feature of a language model is described by an explanation. You will see several numbered texts. "
                "For each text, decide whether the feature is present in it, that is, whether the text contains what "
                "the explanation describes: 1 if it is, 0 if not. Answer with the list only, like [1, 0, 1].")


class Detection(Scorer):
    name = "detection"
    batch_system = BATCH_SYSTEM

    def items(self, examples: LatentExamples, rng: np.random.Generator) -> list[Item]:
        return ([Item(e, 1, "activating") for e in examples.test]
                + [Item(e, 0, "non_activating") for e in examples.non_activating])

    def prompt(self, explanation: str, item: Item, decode: Decode) -> Messages:
        return [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Text: {plain(item.example, decode)}\n\nDoes this text contain "
                                            f"{explanation.rstrip('.?! ')}?"}]

    def show(self, item: Item, decode: Decode) -> str:
        return plain(item.example, decode)


class Recall(Detection):
    """Detection on the activating examples only: the share the explanation recognises."""

    name = "recall"

    def items(self, examples: LatentExamples, rng: np.random.Generator) -> list[Item]:
        return [Item(e, 1, "activating") for e in examples.test]
