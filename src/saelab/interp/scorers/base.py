"""Scorer base class: an explanation and labelled examples → one record per example.

A record holds the example (tokens, activations), its label (1 = the latent fires), the
prediction, the probability where the client gives one, whether it was correct, and
`failed` / `reason` when no usable answer came back (counted, retried on the next run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..clients.base import Answer, Client, Messages
from ..examples import Example, LatentExamples
from ..format import Decode

_YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Item:
    """One example to classify."""

    example: Example
    label: int
    """1 when the latent fires in it (detection) / the marks are the true firing tokens (fuzz)"""
    kind: str
    """activating | non_activating"""
    marks: tuple[bool, ...] | None = None
    """tokens shown marked (fuzz); None: no marks"""


def record(item: Item, answer: Answer) -> dict[str, Any]:
    """The per-example record of one answer (prediction from P(yes), else from a leading yes/no)."""
    prob, pred, failed, reason = answer.prob_yes, None, answer.failed, answer.reason
    if not failed and prob is not None:
        pred = int(prob >= 0.5)
    elif not failed:
        m = _YES_NO.match(answer.text or "")
        if m:
            pred = int(m.group(1).lower() == "yes")
        else:
            failed, reason = True, f"answer is not yes/no: {(answer.text or '')[:40]!r}"
    return {"kind": item.kind, "window": item.example.window, "start": item.example.start,
            "tokens": item.example.tokens, "activations": item.example.activations,
            "marks": list(item.marks) if item.marks is not None else None, "label": item.label,
            "prediction": pred, "probability": None if prob is None else round(float(prob), 6),
            "correct": None if pred is None else bool(pred == item.label), "failed": failed, "reason": reason}


class Scorer:
    """Asks the client one yes/no question per item."""

    name = "base"
    needs_client = True

    def items(self, examples: LatentExamples, rng: np.random.Generator) -> list[Item]:
        raise NotImplementedError

    def prompt(self, explanation: str, item: Item, decode: Decode) -> Messages:
        raise NotImplementedError

    def score(self, explanation: str, items: Sequence[Item], decode: Decode, client: Client | None,
              **_: Any) -> list[dict[str, Any]]:
        assert client is not None
        answers = client.judge([self.prompt(explanation, it, decode) for it in items])
        return [record(it, a) for it, a in zip(items, answers)]
