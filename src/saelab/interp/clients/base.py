"""The client interface: chat prompts in, answers (text and/or P(yes)) out.

A client never raises for a bad answer: it returns `Answer(failed=True, reason=...)`, so a
failure is data that the run records, counts, and retries on the next run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Messages = list[dict[str, str]]
YES, NO = ("yes",), ("no",)


@dataclass(frozen=True)
class Answer:
    """One answer to one prompt."""

    text: str | None = None
    """the generated text (None when only log-probs were read)"""
    prob_yes: float | None = None
    """P(yes) / (P(yes) + P(no)) at the first answer token, where log-probs exist"""
    failed: bool = False
    reason: str | None = None
    """why it failed (HTTP status, timeout, empty answer, …); never contains a secret"""
    probs: tuple[float, ...] | None = None
    """multiple choice read from log-probs: the probability of each option (0-based), summing to 1"""
    values: tuple[float, ...] | None = None
    """simulation read from log-probs: the expected value at each slot"""


def yes_share(logprobs: dict[str, float]) -> float | None:
    """P(yes) / (P(yes) + P(no)) from {token: logprob} of the first answer token; None if neither appears."""
    yes = sum(math.exp(v) for t, v in logprobs.items() if t.strip().lower() in YES)
    no = sum(math.exp(v) for t, v in logprobs.items() if t.strip().lower() in NO)
    return yes / (yes + no) if yes + no > 0 else None


class Client:
    """Base class: `generate` text; `judge` yes/no questions (log-probs where the client has them)."""

    name = "base"
    has_logprobs = False
    can_prefill = False
    """True when `generate(..., prefix=...)` starts the answer with `prefix` (the model continues it)."""

    def generate(self, prompts: list[Messages], max_tokens: int) -> list[Answer]:
        raise NotImplementedError

    def judge(self, prompts: list[Messages]) -> list[Answer]:
        """Yes/no answers: `prob_yes` where log-probs exist, else the generated text."""
        return self.generate(prompts, max_tokens=3)

    def n_tokens(self, messages: Messages) -> int:
        """Prompt length in tokens (an estimate of 4 characters per token unless the client knows better)."""
        return sum(len(m["content"]) for m in messages) // 4 + 8

    def describe(self) -> dict[str, Any]:
        """What produced the answers, for run_config.json: never a secret."""
        return {"provider": self.name}
