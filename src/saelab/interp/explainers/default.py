"""`default` explainer: activating examples with firing tokens marked `<<like this>>` (and
optionally activation values 0–10), a few worked examples, and the answer on an
`Explanation:` line.

`default-tally` adds, after the examples, the marked tokens counted over them (most frequent first).

Worked examples are opt-in (`default-fewshot`). Given as user/assistant turns, Qwen2.5-Coder-1.5B
answered "verbs of speaking or announcing" (the first worked answer then) for 8 of 20 real latents
whose marked tokens were songs, club names or 'other'; given inline in the system message, it
still repeated them for 4 of 6 latents and was generic for the rest. An answer that repeats a
worked answer is a counted failure (`Explainer.worked_answers`), never an explanation.
"""

from __future__ import annotations

from ..clients.base import Messages
from ..examples import LatentExamples
from ..format import Decode, activation_list, marked, marked_tally
from .base import Explainer

WORKED = [
    ("Example 1: it weighs 3 <<kg>>\nExample 2: add 200 <<grams>> of flour", "units of weight after a number"),
    ("Example 1: Jean-<<Paul>> Sartre\nExample 2: Anne-<<Marie>> said", "the second part of hyphenated first names"),
    ("Example 1: the Battle of <<Hastings>>\nExample 2: the Siege of <<Orleans>>",
     "place names after 'Battle of' or 'Siege of'"),
]
"""(marked examples, answer): illustrations of how specific an answer should be."""

_INTRO = ("You are a careful researcher explaining what a feature of a language model detects. You see text "
          "examples; the tokens where the feature fires are marked <<like this>>. ")
_TASK = ("Find what the marked tokens have in common: name the words themselves or the topic they share, as "
         "specifically as the examples allow, not just a part of speech. Answer with one line: 'Explanation: <a "
         "phrase of at most 10 words>', nothing else.")
SYSTEM = _INTRO + _TASK
TALLY_SYSTEM = _INTRO + "After the examples, the marked tokens are counted, most frequent first. " + _TASK
FEWSHOT_SYSTEM = SYSTEM + (" Illustrations, about OTHER features (never answer with theirs):\n"
                           + "\n".join(f"- marked tokens like {ex.replace(chr(10), ' / ')} → Explanation: {answer}"
                                        for ex, answer in WORKED))


def example_block(examples: LatentExamples, decode: Decode, show_activations: bool) -> str:
    scale = max((e.max_activation for e in examples.train), default=0.0)
    lines = []
    for i, e in enumerate(examples.train, 1):
        lines.append(f"Example {i}: {marked(e, decode)}")
        if show_activations:
            lines.append(f"Activations: {activation_list(e, decode, scale)}")
    return "\n".join(lines)


class DefaultExplainer(Explainer):
    """`worked_examples=True` adds the illustrations (the `default-fewshot` explainer); measured on 20 real
    latents with Qwen2.5-Coder-1.5B, the plain prompt gave specific answers where the few-shot ones were
    copied or generic, so it is the default."""

    name = "default"

    def __init__(self, show_activations: bool = False, worked_examples: bool = False, tally: bool = False) -> None:
        if worked_examples and tally:
            raise ValueError("explainer: worked examples and the tally are separate explainers; pick one.")
        self.show_activations, self.worked_examples, self.tally = show_activations, worked_examples, tally
        if worked_examples:  # only answers the model was shown can be copies
            self.name = "default-fewshot"
            self.worked_answers = tuple(answer for _, answer in WORKED)
        if tally:
            self.name = "default-tally"

    def prompt(self, examples: LatentExamples, decode: Decode) -> Messages:
        system = FEWSHOT_SYSTEM if self.worked_examples else TALLY_SYSTEM if self.tally else SYSTEM
        user = example_block(examples, decode, self.show_activations)
        if self.tally:
            user += "\nMarked tokens, most frequent first: " + ", ".join(
                f"{w!r} ×{c}" for w, c in marked_tally(examples.train, decode))
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]
