"""`default` explainer: activating examples with firing tokens marked `<<like this>>` (and
optionally activation values 0–10), two worked examples, and the answer on an
`Explanation:` line."""

from __future__ import annotations

from ..clients.base import Messages
from ..examples import LatentExamples
from ..format import Decode, activation_list, marked
from .base import Explainer

SYSTEM = ("You are a careful researcher explaining what a feature of a language model detects. You see text "
          "examples; the tokens where the feature fires are marked <<like this>>. Find what the marked tokens "
          "have in common (the words themselves, their meaning, or the context around them). Answer with one "
          "line that starts with 'Explanation:' followed by a short phrase, nothing else.")

WORKED = [
    ("Example 1: and he <<said>> that the plan would work\n"
     "Example 2: she <<told>> reporters on Monday\n"
     "Example 3: the minister <<announced>> a new tax",
     "Explanation: verbs of speaking or announcing"),
    ("Example 1: prices rose by <<5>>% in <<2019>>\n"
     "Example 2: about <<300>> people came\n"
     "Example 3: chapter <<12>> of the book",
     "Explanation: numbers written with digits"),
]


def example_block(examples: LatentExamples, decode: Decode, show_activations: bool) -> str:
    scale = max((e.max_activation for e in examples.train), default=0.0)
    lines = []
    for i, e in enumerate(examples.train, 1):
        lines.append(f"Example {i}: {marked(e, decode)}")
        if show_activations:
            lines.append(f"Activations: {activation_list(e, decode, scale)}")
    return "\n".join(lines)


class DefaultExplainer(Explainer):
    name = "default"

    def __init__(self, show_activations: bool = False) -> None:
        self.show_activations = show_activations

    def prompt(self, examples: LatentExamples, decode: Decode) -> Messages:
        messages: Messages = [{"role": "system", "content": SYSTEM}]
        for user, answer in WORKED:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": example_block(examples, decode, self.show_activations)})
        return messages
