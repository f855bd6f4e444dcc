"""Co-occurrence windows cut inside documents.

The workspace's token windows are one stream of documents (each followed by EOS) cut
into rows of ctx_len tokens; `doc_index` gives the document of every token. A
co-occurrence window is k consecutive tokens of ONE document, starting at multiples of
the stride from the document's first token (in the stream kept here). For a document of
L tokens:

- `drop`: windows [s, s+k) with s + k ≤ L (SFAL's rule; a document shorter than k gives
  none, and its tail after the last full window is not counted);
- `keep`: the same, plus one shorter window over the tail (a document shorter than k is
  one window).

Token t of the document lies in windows i with i·stride ≤ t < i·stride + k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .config import CoocConfig


@dataclass(frozen=True)
class WindowMap:
    """For every stream position g (row-major over [n_windows, ctx_len]) the range of
    co-occurrence windows that contain it: [lo[g], hi[g]) (empty if lo ≥ hi)."""

    lo: np.ndarray
    """int64 [G]"""
    hi: np.ndarray
    """int64 [G]"""
    n_windows: int
    """N: the number of co-occurrence windows (also those where nothing fires)."""
    limit: int
    """Positions ≥ limit are not used (n_docs / n_tokens)."""
    open_from: np.ndarray
    """int64 [G + 1]: smallest window id that contains a position ≥ g (n_windows if none):
    windows below it are complete once positions < g are read."""
    counts: dict[str, int]
    """documents, short documents, tokens in dropped tails, tokens used."""

    def positions(self, w_lo: int, w_hi: int) -> tuple[int, int]:
        """[g_lo, g_hi): the stream positions that co-occurrence windows [w_lo, w_hi) cover (a rank's share
        under torchrun); (0, 0) for no windows. Window ids grow with stream position, so this is one range."""
        lo, hi = self.lo[: self.limit], self.hi[: self.limit]
        inside = (lo < w_hi) & (hi > w_lo) & (hi > lo)  # bool [limit]
        if w_lo >= w_hi or not inside.any():
            return 0, 0
        return int(inside.argmax()), self.limit - int(inside[::-1].argmax())


def document_segments(doc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """doc: int [G] → (start, length) of each run of equal document ids, in stream order."""
    if doc.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    start = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]]).astype(np.int64)
    return start, np.diff(np.r_[start, doc.size]).astype(np.int64)


def windows_per_document(length: np.ndarray, k: int, stride: int, keep: bool) -> np.ndarray:
    """int64 [n_docs]: co-occurrence windows in a document of each length."""
    full = np.where(length >= k, (length - k) // stride + 1, 0)
    if not keep:
        return full
    covered = np.where(full > 0, (full - 1) * stride + k, 0)  # tokens covered by full windows
    return full + (covered < length)


def position_limit(doc: np.ndarray, config: CoocConfig) -> int:
    """The number of leading stream positions to use (n_docs / n_tokens)."""
    if config.n_tokens is not None:
        return min(config.n_tokens, doc.size)
    if config.n_docs is not None:
        start, _ = document_segments(doc)
        return int(start[config.n_docs]) if config.n_docs < start.size else doc.size
    return doc.size


def build_window_map(doc_index: np.ndarray, config: CoocConfig) -> WindowMap:
    """doc_index: int [n_windows, ctx_len] → the co-occurrence windows of every position."""
    doc = np.asarray(doc_index).reshape(-1)
    limit = position_limit(doc, config)
    start, length = document_segments(doc[:limit])
    k, stride, keep = config.k, config.effective_stride, config.partial == "keep"
    per_doc = windows_per_document(length, k, stride, keep)
    first = np.r_[0, np.cumsum(per_doc)[:-1]].astype(np.int64)  # id of each document's first window
    seg = np.repeat(np.arange(start.size), length)  # [limit]
    t = np.arange(limit, dtype=np.int64) - start[seg]  # offset inside the document
    lo_local = np.maximum(0, -(-(t - k + 1) // stride))  # ceil((t − k + 1) / stride), ≥ 0
    hi_local = np.minimum(per_doc[seg], t // stride + 1)
    lo = np.full(doc.size, 0, np.int64)
    hi = np.full(doc.size, 0, np.int64)
    lo[:limit], hi[:limit] = first[seg] + lo_local, first[seg] + hi_local
    n_windows = int(per_doc.sum())
    live = np.where(hi > lo, lo, n_windows)
    open_from = np.r_[np.minimum.accumulate(live[::-1])[::-1], n_windows].astype(np.int64)
    in_window = hi[:limit] > lo[:limit]
    counts = {"documents": int(start.size), "documents_shorter_than_k": int((length < k).sum()),
              "tokens_used": int(in_window.sum()), "tokens_not_in_any_window": int(limit - in_window.sum()),
              "positions_after_limit": int(doc.size - limit)}
    if n_windows == 0:
        longest = int(length.max()) if length.size else 0
        raise ConfigError(f"k: got {k}, but the longest document has {longest} tokens, so no window of k "
                          f"tokens fits with partial='drop': use a smaller --k or --partial keep.")
    return WindowMap(lo, hi, n_windows, limit, open_from, counts)
