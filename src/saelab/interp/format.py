"""How examples are shown to a model: tokens where the latent fires marked `<<like this>>`."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Sequence

from .examples import Example

Decode = Callable[[list[int]], list[str]]


def token_decoder(tokenizer: Any) -> Decode:
    """ids → one string per token, so a mark can sit around each token. Pieces come from decoding
    growing prefixes, so the spaces a tokenizer's decoder inserts (word-level) or folds into tokens
    (byte-level BPE) land in the right piece and the pieces join back to the decoded text."""

    def decode(ids: list[int]) -> list[str]:
        pieces, prev = [], ""
        for i in range(len(ids)):
            cur = tokenizer.decode(ids[: i + 1], skip_special_tokens=False)
            pieces.append(cur[len(prev):] if cur.startswith(prev) else tokenizer.decode(ids[i : i + 1]))
            prev = cur
        return pieces

    return decode


def plain(example: Example, decode: Decode) -> str:
    return "".join(decode(example.tokens)).replace("\n", " ")


def marked(example: Example, decode: Decode, marks: Sequence[bool] | None = None) -> str:
    """The text with each run of marked tokens (default: where the latent fires) inside << >>."""
    marks = [a > 0 for a in example.activations] if marks is None else list(marks)
    out, inside = [], False
    for piece, m in zip(decode(example.tokens), marks):
        if m and not inside:
            out.append("<<")
        elif not m and inside:
            out.append(">>")
        out.append(piece)
        inside = m
    if inside:
        out.append(">>")
    return "".join(out).replace("\n", " ")


def activation_list(example: Example, decode: Decode, scale: float) -> str:
    """`token (value)` pairs of the firing tokens, values scaled to integers 0–10 by `scale` (the max)."""
    pieces = decode(example.tokens)
    pairs = [f"{pieces[i]!r} ({round(10 * a / scale) if scale > 0 else 0})"
             for i, a in enumerate(example.activations) if a > 0]
    return ", ".join(pairs)


def marked_tally(examples: Sequence[Example], decode: Decode, n: int = 10) -> list[tuple[str, int]]:
    """The `n` most frequent firing tokens of `examples` (stripped of spaces; blank ones left out), with
    how many times each fires, most frequent first (ties in order of first appearance)."""
    counts: Counter[str] = Counter()
    for e in examples:
        pieces = decode(e.tokens)
        counts.update(p.strip() for p, a in zip(pieces, e.activations) if a > 0 and p.strip())
    return counts.most_common(n)
