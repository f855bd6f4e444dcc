"""`contrastive` explainer: activating examples beside non-activating ones (best with the
`neighbours` or `FAISS` sources, whose negatives look like the positives). The
non-activating examples shown are the training negatives, never those used for scoring."""

from __future__ import annotations

from ..clients.base import Messages
from ..examples import LatentExamples
from ..format import Decode, plain
from .base import Explainer
from .default import SYSTEM, example_block

CONTRAST = (" You also see texts where the feature does NOT fire: the explanation must say what separates "
            "the marked examples from those.")


class ContrastiveExplainer(Explainer):
    name = "contrastive"

    def __init__(self, show_activations: bool = False) -> None:
        self.show_activations = show_activations

    def prompt(self, examples: LatentExamples, decode: Decode) -> Messages:
        messages: Messages = [{"role": "system", "content": SYSTEM + CONTRAST}]
        negatives = "\n".join(f"Counterexample {i}: {plain(e, decode)}"
                              for i, e in enumerate(examples.train_non_activating, 1))
        block = example_block(examples, decode, self.show_activations)
        messages.append({"role": "user", "content": f"{block}\n{negatives}" if negatives else block})
        return messages
