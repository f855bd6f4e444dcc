"""Explainer base class: examples → prompt → answer → explanation (or a counted failure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from ..clients.base import Client, Messages
from ..examples import LatentExamples
from ..format import Decode

_MARKED_LINE = re.compile(r"^[\s*#>_-]*explanation[\s*_]*:[\s*_]*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Explanation:
    """One latent's explanation, or why there is none."""

    latent: int
    explanation: str | None
    explainer: str
    failed: bool = False
    reason: str | None = None
    raw: str | None = None
    """the model's whole answer (kept to audit the parser)"""
    source: str | None = None
    """hash of the model and the prompt it answered: a rerun reuses the explanation only when both are the same"""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_ENUMERATION = re.compile(r"^(?:\d{1,2}[.)]|[-*•])\s+")
"""A leading list marker ("1. ", "2) ", "- "): small explainers start an enumeration after `Explanation:`."""


def parse_marked(text: str | None) -> tuple[str | None, str | None]:
    """(explanation, None) from the last `Explanation: ...` line, else (None, reason)."""
    if not text or not text.strip():
        return None, "empty answer"
    found = _MARKED_LINE.findall(text)
    if not found:
        return None, "no 'Explanation:' line in the answer"
    answer = found[-1].strip().strip("*_` ").strip()
    answer = _ENUMERATION.sub("", answer, count=1).strip() or answer  # "1. Movie tie-ins …": a list's first item
    if len(answer) >= 2 and answer[0] == answer[-1] and answer[0] in "\"'" and answer[0] not in answer[1:-1]:
        answer = answer[1:-1].strip()  # one quoted answer; "'at' and 'on'" keeps its quotes
    if not answer or answer.startswith("<") or answer in {"...", "[your explanation]"}:
        return None, "the 'Explanation:' line is empty or a placeholder"
    return answer, None


_BOILERPLATE = re.compile(r"^(?:the\s+)?(?:marked|highlighted)\s+tokens(?:"
                          r"(?:,?\s+most\s+frequent(?:ly)?\s+first,?)?"
                          r"(?:\s+in\s+(?:all|these|the)(?:\s+the)?\s+examples)?\s+(?:are|is|refer\s+to)\s+(?:all\s+)?"
                          # "The marked tokens 'to' and 'of' are …": the quoted tokens stay, the filler goes
                          r"|\s+(?=['\"‘“]))",
                          re.IGNORECASE)


_CLOSING = {'"': '"', "'": "'", "‘": "’", "“": "”"}
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|‘[^’]*’|“[^”]*”")


def _cut_off(item: str) -> bool:
    """Whether one list item was cut off by the answer's token budget: an unclosed parenthesis, or an
    opening quote that never closes (`"great`, `'something' (1 time`, `'telling' (`)."""
    item = item.strip()
    bare = _QUOTED.sub("", item)  # a quoted token "(" is not an open parenthesis
    if bare.count("(") > bare.count(")"):
        return True
    if not item or item[0] not in _CLOSING:
        return False
    opening, closing = item[0], _CLOSING[item[0]]
    return (item.count(opening) < 2) if opening == closing else (closing not in item)


def drop_cut_item(answer: str) -> str:
    """`answer` without a last list item that the token budget cut off mid-way. A 60-token answer cut 15 of
    the 60 tally explanations of the demo's wide SAE (bench/interp_ultra60_summary.md) and 8 of the 24 before
    them in the middle of an item, and the judge then read `… "every" (1 time), "great` as the explanation.
    An answer that is one cut item, or has no list, is kept as it is."""
    head, sep, last = answer.rpartition(", ")
    if sep and head.strip() and _cut_off(last):
        return head.rstrip(" ,;")
    return answer


def _normal(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


PREFILL = "Explanation:"


def _first_line(text: str | None, prefix: str) -> str:
    """`prefix` and the first line the model wrote after it (a small model may ramble on below)."""
    rest = (text or "")[len(prefix):].strip()
    return f"{prefix} {rest.splitlines()[0] if rest else ''}"


class Explainer:
    """Builds one prompt per latent; the client answers; `parse_marked` reads the answer."""

    name = "base"
    """Its folder: explanations/<name>/."""
    needs_client = True
    """Asks an LLM (`explain`). False for the top-tokens baseline, which reads the latent store (`explain_store`)."""
    variant = "explanation"
    """The variant its explanations are scored as (scores/<scorer>/<variant>/) when it is the run's explainer."""
    kind = "LLM explanation"
    """How reports label its texts."""
    worked_answers: tuple[str, ...] = ()
    """Answers of the worked examples the prompt shows: an explanation that repeats one is a failure."""

    def read(self, text: str | None) -> tuple[str | None, str | None]:
        """(explanation, None) or (None, reason): the marked line, without "The marked tokens are …" filler."""
        answer, reason = parse_marked(text)
        if answer is None:
            return None, reason
        answer = drop_cut_item(_BOILERPLATE.sub("", answer).strip() or answer)
        if _normal(answer) in {_normal(w) for w in self.worked_answers}:
            return None, "repeated a worked example's answer"
        return answer, None

    def prompt(self, examples: LatentExamples, decode: Decode) -> Messages:
        raise NotImplementedError

    def fit(self, examples: LatentExamples, decode: Decode, client: Client, max_len: int) -> Messages:
        """The prompt, with training examples dropped (weakest first) until it fits in max_len tokens."""
        train = list(examples.train)
        while True:
            messages = self.prompt(replace(examples, train=train), decode)
            if len(train) <= 1 or client.n_tokens(messages) <= max_len:
                return messages
            train = sorted(train, key=lambda e: e.max_activation)[1:]

    def explain(self, items: list[LatentExamples], decode: Decode, client: Client, max_len: int,
                max_new_tokens: int) -> list[Explanation]:
        prompts = [self.fit(ex, decode, client, max_len) for ex in items]
        # Where the client can, the answer starts with "Explanation:" and only its first line is read:
        # SmolLM2-135M ignored the requested format on 4 of 4 latents without this.
        prefix = PREFILL if getattr(client, "can_prefill", False) else ""
        answers = (client.generate(prompts, max_new_tokens, prefix=prefix) if prefix
                   else client.generate(prompts, max_new_tokens))
        out = []
        for ex, a in zip(items, answers):
            if a.failed:
                out.append(Explanation(ex.latent, None, self.name, True, a.reason, a.text))
                continue
            text, reason = self.read(_first_line(a.text, prefix) if prefix else a.text)
            out.append(Explanation(ex.latent, text, self.name, text is None, reason, a.text))
        return out
