"""Top-token descriptions: the no-LLM baseline explanation of a latent.

A latent is described by the tokens it fires on most often (with the share of its
firings on each) and the context of its strongest activation. These are NOT LLM
explanations: every report that uses them labels them `TOP_TOKENS_KIND`.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

import numpy as np
import scipy.sparse as sp

from ..data.tokens import TokenWindows
from ..errors import ArtifactError
from ..latents.store import LatentStore

log = logging.getLogger(__name__)
TOP_TOKENS_KIND = "top-token description (no LLM)"


def token_counts(store: LatentStore, windows: TokenWindows) -> sp.csr_matrix:
    """int64 [d_sae, vocab]: how often each latent fires on each token id (one pass over the store)."""
    if store.tokens_hash != windows.tokens_hash:
        raise ArtifactError(f"the latent store {store.path} was cached on other token windows "
                            f"({store.tokens_hash} ≠ {windows.tokens_hash}).")
    tokens = windows.tokens[: store.n_windows].numpy().reshape(-1).astype(np.int64)  # [positions]
    vocab = int(tokens.max()) + 1
    out = sp.csr_matrix((store.d_sae, vocab), dtype=np.int64)
    for shard in store.iter_csr():
        tok = tokens[shard.window_start * store.ctx_len : shard.window_stop * store.ctx_len]
        onehot = sp.csr_matrix((np.ones(tok.size, np.int64), (np.arange(tok.size), tok)), shape=(tok.size, vocab))
        fired = shard.matrix.astype(bool).astype(np.int64)  # [positions, d_sae]
        out = out + (fired.T @ onehot).tocsr()
    return out


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False) if tokenizer is not None else " ".join(map(str, ids))


def _context(store: LatentStore, windows: TokenWindows, tokenizer: Any, latent: int, width: int) -> str:
    top = store.top_k(latent, 1)
    if top.windows.size == 0:
        return ""
    w, p = int(top.windows[0]), int(top.positions[0])
    row = windows.tokens[w].tolist()
    before, token = _decode(tokenizer, row[max(0, p - width) : p]), _decode(tokenizer, [row[p]])
    return f"{before}«{token}»".replace("\n", " ")


def top_token_explanations(store: LatentStore, windows: TokenWindows, tokenizer: Any,
                           latents: Iterable[int] | None = None, n_top: int = 5,
                           context: int = 6) -> dict[int, str]:
    """One description per latent that fires: its `n_top` most frequent tokens with their
    share of its firings, and (if context > 0) the `context` tokens before its strongest
    activation, the firing token in «».

    Example:
        >>> top_token_explanations(store, windows, lm.tokenizer, latents=[12])
        {12: 'top tokens: " the" 41%, " a" 12%, " an" 9% | strongest: "went to«the»"'}
    """
    counts = token_counts(store, windows)
    wanted = list(range(store.d_sae) if latents is None else latents)
    out: dict[int, str] = {}
    for latent in wanted:
        lo, hi = counts.indptr[latent], counts.indptr[latent + 1]
        if hi == lo:
            continue  # never fires: nothing to describe
        ids, n = counts.indices[lo:hi], counts.data[lo:hi]
        order = np.lexsort((ids, -n))[:n_top]
        total = int(n.sum())
        parts = [f"{_decode(tokenizer, [int(ids[o])])!r} {100 * n[o] / total:.0f}%" for o in order]
        text = "top tokens: " + ", ".join(parts)
        if context > 0:
            text += f" | strongest: {_context(store, windows, tokenizer, latent, context)!r}"
        out[int(latent)] = text
    log.info("top-token descriptions for %d latents (%d never fire)", len(out), len(wanted) - len(out))
    return out
