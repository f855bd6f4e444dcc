"""The sparse pieces of a training step: only the work a TopK-style dictionary needs.

A step has one dense product, the encoder's pre-activations x W_enc [N, d_sae], which picks the
active latents. Everything after the selection touches only the E active (token, latent) entries:

- `encode_selected`: the selected pre-activations, as a differentiable function of W_enc, b_enc and
  the input shift b_dec. Its backward is sparse: ∂W_enc is a segment sum of the input rows per
  latent (E · d_in multiply-adds instead of the dense N · d_sae · d_in), ∂b_enc an index_add, and
  ∂b_dec = −W_enc ∂b_enc (the input shift enters every entry the same way).
- `decode_selected`: Σ_e a_e · W_dec[latent_e] per token, an `embedding_bag` (its backward is
  sparse too: rows of ∂W_dec only where a latent fired).

The dense product may run in bfloat16 where the machine multiplies bf16 fast (`encoder_dtype`), as
autocast does on a GPU: the selected activations then carry bf16's rounding (about 0.4% relative),
and the loss and every gradient are computed from them in float32. Recomputing the E selected values
exactly would gather E rows of W_enc and cost about as much as the product saves (measured: 155 ms
against 150 ms saved for 16K latents and 2K tokens on 2 cores). In float32 (and float64, the
gradient tests) the step equals the dense reference.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..distributed import LOCAL, Local


class Selection(NamedTuple):
    """The active entries of a batch, sorted by token: entry e is (rows[e], cols[e])."""

    rows: Tensor
    """long [E]: token of each entry, non-decreasing"""
    cols: Tensor
    """long [E]: latent of each entry"""
    pre: Tensor
    """[E]: the entries' pre-activations from the selecting product (its dtype; exact when it is the
    dictionary's own)"""


def offsets_of(rows: Tensor, n: int) -> Tensor:
    """Start of each of n groups in a non-decreasing index vector: long [n] (empty groups repeat)."""
    counts = torch.bincount(rows, minlength=n)
    return torch.cumsum(counts, 0) - counts


def dense_pre(x: Tensor, b_in: Tensor | None, W_enc: Tensor, b_enc: Tensor, dtype: torch.dtype) -> Tensor:
    """(x − b_in) W_enc + b_enc, no gradient, in `dtype`. x [N, d], W_enc [d, d_sae] -> [N, d_sae]."""
    with torch.no_grad():
        xc = x - b_in if b_in is not None else x
        if dtype == W_enc.dtype:
            return torch.addmm(b_enc, xc, W_enc)
        return torch.addmm(b_enc.to(dtype), xc.to(dtype), W_enc.to(dtype))


def topk_selection(pre: Tensor, k: int) -> Selection:
    """Per-token top-k of pre [N, d_sae] (the top-k of relu(pre) are relu of these): k entries per token."""
    values, indices = pre.topk(k, dim=-1, sorted=False)  # [N, k]
    n = pre.shape[0]
    rows = torch.arange(n, device=pre.device).repeat_interleave(k)
    return Selection(rows, indices.reshape(-1), values.reshape(-1))


def batch_topk_selection(scores: Tensor, k: int, pre: Tensor | None = None, ranks: Local = LOCAL,
                         n_total: int | None = None) -> Selection:
    """BatchTopK: the k·N largest positive `scores` [N, d_sae] of the batch, sorted by token.

    `pre` (default: the scores) gives the entries' pre-activations when the scores are not them
    (a crosscoder selects on f_j · Σ_m ‖d_j^m‖). Under data parallel (`ranks`) the batch is every rank's
    rows, `n_total` of them: the selection is this rank's part of the whole batch's k·N largest."""
    n, d = scores.shape
    flat = scores.reshape(-1)
    if ranks.world == 1:
        values, index = flat.topk(min(k * n, flat.numel()), sorted=False)
        keep = index[values > 0]
    else:
        keep = _global_top(flat, k * (n_total if n_total is not None else n), ranks)
    # row-major order (by token, then latent) from a mask: torch.sort's threads stalled for 50-250 ms on a
    # busy 2-core machine where this took under 10
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    mask[keep] = True
    index = mask.nonzero().squeeze(1)
    rows, cols = index // d, index % d
    return Selection(rows, cols, (pre if pre is not None else scores).reshape(-1)[index])


def _global_top(flat: Tensor, m: int, ranks: Local) -> Tensor:
    """Indices of this rank's entries of `flat` among the m largest positive values of every rank's.

    The m-th largest of the ranks' gathered local top-m is the threshold; each rank keeps its values above it,
    and of the values equal to it as many as the m still need, lower ranks' first. Tied entries come from equal
    rows (an all-zero input gives every latent its bias): which of them one process's topk keeps is arbitrary,
    but their number is the same, and so are the loss and the gradients."""
    values = flat.topk(min(m, flat.numel()), sorted=False).values
    padded = torch.zeros(m, dtype=torch.float32, device=flat.device)  # zeros: only positive values are kept
    padded[:values.numel()] = values
    threshold = ranks.gather(padded).reshape(-1).topk(m, sorted=False).values.min().to(flat.dtype)  # of [world·m]
    positive = flat > 0
    above, tied = (flat > threshold) & positive, (flat == threshold) & positive
    counts = ranks.gather(torch.stack([above.sum(), tied.sum()]))  # [world, 2]
    take = m - int(counts[:, 0].sum()) - int(counts[:ranks.rank, 1].sum())
    take = min(max(take, 0), int(counts[ranks.rank, 1]))
    return torch.cat([above.nonzero().squeeze(1), tied.nonzero().squeeze(1)[:take]])


class _EncodeSelected(torch.autograd.Function):
    """pre_e = (x[rows_e] − b_in) · W_enc[:, cols_e] + b_enc[cols_e], with a sparse backward."""

    @staticmethod
    def forward(ctx, x: Tensor, b_in: Tensor | None, W_enc: Tensor, b_enc: Tensor, rows: Tensor, cols: Tensor,
                values: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, b_in, W_enc, rows, cols)
        return values.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, b_in, W_enc, rows, cols = ctx.saved_tensors
        d_sae = W_enc.shape[1]
        grad = grad.to(W_enc.dtype)
        grad_b_enc = torch.zeros(d_sae, dtype=W_enc.dtype, device=W_enc.device).index_add_(0, cols, grad)
        grad_x = grad_b_in = grad_W = None
        if ctx.needs_input_grad[2]:
            # ∂W_enc[:, j] = Σ_{e: cols_e = j} grad_e (x[rows_e] − b_in): a segment sum over entries
            # sorted by latent, which embedding_bag does without materialising [E, d_in].
            order = torch.argsort(cols, stable=True)
            xc = x - b_in if b_in is not None else x
            grad_W = F.embedding_bag(rows[order], xc, offsets_of(cols[order], d_sae), mode="sum",
                                     per_sample_weights=grad[order]).T  # [d_in, d_sae]
        if b_in is not None and ctx.needs_input_grad[1]:
            grad_b_in = -(W_enc @ grad_b_enc)
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(x).index_add_(0, rows, grad[:, None] * W_enc.T[cols])
        return grad_x, grad_b_in, grad_W, grad_b_enc if ctx.needs_input_grad[3] else None, None, None, None


def encode_selected(x: Tensor, b_in: Tensor | None, W_enc: Tensor, b_enc: Tensor, sel: Selection) -> Tensor:
    """The selected entries' pre-activations [E] in W_enc's dtype, differentiable with respect to W_enc,
    b_enc and b_in (sparse backward). x [N, d_in] (input, before the shift b_in), W_enc [d_in, d_sae]."""
    return _EncodeSelected.apply(x, b_in, W_enc, b_enc, sel.rows, sel.cols, sel.pre.to(W_enc.dtype))


def decode_selected(acts: Tensor, sel: Selection, W_dec: Tensor, n: int, per_token: int | None = None) -> Tensor:
    """Σ_e acts_e · W_dec[cols_e] per token: [n, d_out]. W_dec [d_sae, d_out]. `per_token`: every token has
    exactly that many entries (TopK), so no offsets are needed."""
    if per_token is not None:
        return F.embedding_bag(sel.cols.view(n, per_token), W_dec, per_sample_weights=acts.view(n, per_token),
                               mode="sum")
    return F.embedding_bag(sel.cols, W_dec, offsets_of(sel.rows, n), per_sample_weights=acts, mode="sum")


def subset(sel: Selection, keep: Tensor) -> Selection:
    return Selection(sel.rows[keep], sel.cols[keep], sel.pre[keep])


__all__ = ["Selection", "batch_topk_selection", "decode_selected", "dense_pre", "encode_selected", "offsets_of",
           "subset", "topk_selection"]
