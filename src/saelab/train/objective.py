"""Training-time activations and losses: TopK, BatchTopK, Matryoshka, the model-diffing crosscoder, plus AuxK.

Every loss is a fraction of variance unexplained, Σ‖y − ŷ‖² / Σ‖y − ȳ‖² over the batch,
as sparsify trains: the scale of the activations does not change the loss or the rate.

The step is sparse (`sparse.py`): one dense encoder product picks the active latents, and the
decoder, the AuxK term and every backward touch only those. `reference.py` keeps the dense
formulation these functions are tested against, gradient for gradient.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..coders import SparseCoder
from ..distributed import LOCAL, Local
from .sparse import (
    Selection,
    batch_topk_selection,
    decode_selected,
    dense_pre,
    encode_selected,
    subset,
    topk_selection,
)


class StepLoss(NamedTuple):
    """What one forward of the training objective gives."""

    loss: Tensor
    """scalar to minimise: reconstruction FVU (mean over Matryoshka prefixes) + auxk_alpha · AuxK"""
    fvu: Tensor
    """FVU of the full reconstruction (detached): a scalar, or [n_sources] for a crosscoder (each model's own)"""
    aux_loss: Tensor
    """scalar: AuxK loss (detached; 0 when no latent is dead)"""
    fired: Tensor
    """bool [d_sae]: latents active on at least one token of the batch"""
    l0: float
    """mean number of active latents per token"""
    min_selected: float | None
    """BatchTopK/Matryoshka: smallest selected activation; crosscoder: smallest selected score
    f · Σ_m ‖d^m‖ (either feeds the inference threshold)"""
    n: int
    """tokens of the batch (under data parallel every rank's: the fields above are the whole batch's, and
    `loss` is this rank's share, so the ranks' gradients sum to the batch's)"""


def fvu(y: Tensor, y_hat: Tensor, total_variance: Tensor) -> Tensor:
    """Σ‖y − ŷ‖² / Σ‖y − ȳ‖²."""
    return (y - y_hat).pow(2).sum() / total_variance


def total_variance(y: Tensor, dim: tuple[int, ...], ranks: Local = LOCAL) -> tuple[int, Tensor]:
    """(N, Σ‖y − ȳ‖²) over the batch's N tokens, summed over `dim` (dim 0 is the tokens): a scalar for y [N, d]
    and dim (0, 1); [n_sources] for a crosscoder's x [N, n_sources, d] and dim (0, 2).

    Under data parallel the batch is every rank's rows: Σy, Σy² and N are summed over the ranks in float64
    (no gradient flows through the target), so every rank divides by the same whole-batch variance."""
    if ranks.world == 1:
        return y.shape[0], (y - y.mean(0)).pow(2).sum(dim).clamp_min(1e-12)
    y64 = y.detach().double()
    stats = ranks.sum(torch.cat([y64.new_tensor([y.shape[0]]), y64.sum(0).reshape(-1), y64.pow(2).sum(0).reshape(-1)]))
    n = stats[0]
    s, ss = stats[1:].view(2, *y.shape[1:])  # Σy, Σy² per feature
    var = (ss - s * s / n).sum([i - 1 for i in dim if i > 0])
    return int(n), var.to(y.dtype).clamp_min(1e-12)


def smallest(values: Tensor) -> float:
    """The smallest of `values` (inf when empty: a rank without any, before the minimum over ranks)."""
    return float(values.min()) if values.numel() else float("inf")


def whole_batch(ranks: Local, loss: Tensor, fvu_: Tensor, aux: Tensor, fired: Tensor, n_active: int, n: int,
                min_selected: float | None) -> StepLoss:
    """The StepLoss of the whole batch from this rank's part of it: FVU and AuxK terms and the active count summed
    over the ranks, the fired set their union, the smallest selected value their minimum. Without data parallel,
    the part is the batch."""
    if ranks.world > 1:
        sums = ranks.sum(torch.cat([fvu_.reshape(-1).double(), aux.reshape(1).double(),
                                    torch.tensor([n_active], dtype=torch.float64, device=fvu_.device)]))
        fvu_, aux, n_active = sums[:-2].to(fvu_.dtype).view_as(fvu_), sums[-2].to(aux.dtype), int(sums[-1])
        low = min_selected if min_selected is not None else 0.0
        flags = ranks.max(torch.cat([fired.float(), fired.new_tensor([-low], dtype=torch.float32)]))
        fired = flags[:-1] > 0
        min_selected = -float(flags[-1]) if min_selected is not None else None
    if min_selected == float("inf"):
        min_selected = 0.0  # nothing selected in the whole batch
    return StepLoss(loss=loss, fvu=fvu_, aux_loss=aux, fired=fired, l0=n_active / max(1, n),
                    min_selected=min_selected, n=n)


def code_norms(coder: SparseCoder) -> Tensor:
    """Σ_m ‖d_j^m‖: [d_sae], the per-latent factor of a crosscoder's selection score."""
    return coder.W_dec.norm(dim=-1).sum(-1)  # [d_sae, n_sources] -> [d_sae]


def _encoder(coder: SparseCoder, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
    """(input [N, d], its shift b_in [d] or None, W_enc [d, d_sae]), crosscoder sources flattened into d."""
    b_in = coder.b_dec if coder.cfg.apply_b_dec_to_input else None
    if coder.cfg.kind == "crosscoder":
        n = x.shape[0]
        return x.reshape(n, -1), b_in.reshape(-1) if b_in is not None else None, coder.W_enc.reshape(-1, coder.d_sae)
    return x, b_in, coder.W_enc


def _skip(coder: SparseCoder, x: Tensor) -> Tensor | float:
    return x @ coder.W_skip.T if coder.W_skip is not None else 0.0  # [N, d_out]


def _fired(coder: SparseCoder, sel: Selection, acts: Tensor) -> Tensor:
    fired = torch.zeros(coder.d_sae, dtype=torch.bool, device=acts.device)
    fired[sel.cols[acts.detach() > 0]] = True
    return fired


def objective(coder: SparseCoder, x: Tensor, y: Tensor, dead: Tensor, auxk_alpha: float,
              groups: tuple[int, ...], select_dtype: torch.dtype | None = None, ranks: Local = LOCAL) -> StepLoss:
    """The training loss of one batch. x [N, d_in] (encoder input), y [N, d_out] (target).

    select_dtype: dtype of the dense product that picks the active latents (default: the coder's).
    ranks: `distributed.DataParallel` when x, y are this rank's rows of a batch split over ranks."""
    cfg = coder.cfg
    x = x.to(coder.dtype)
    n = x.shape[0]
    xin, b_in, W_enc = _encoder(coder, x)
    pre = dense_pre(xin, b_in, W_enc, coder.b_enc, select_dtype or coder.dtype)  # [N, d_sae], no grad
    n_total, variance = total_variance(y, (0, 1), ranks)
    min_selected: float | None = None
    if cfg.architecture == "topk":
        sel = topk_selection(pre, cfg.k)
        acts = torch.relu(encode_selected(xin, b_in, W_enc, coder.b_enc, sel))  # [N·k]
        y_hat = decode_selected(acts, sel, coder.W_dec, n, per_token=cfg.k) + coder.b_dec + _skip(coder, x)
        recon = full = fvu(y, y_hat, variance)
    else:
        sel = batch_topk_selection(pre, cfg.k, ranks=ranks, n_total=n_total)
        acts = torch.relu(encode_selected(xin, b_in, W_enc, coder.b_enc, sel))
        recon, full, y_hat = _nested_fvu(coder, sel, acts, x, y, variance, groups)
        min_selected = smallest(acts.detach()[acts.detach() > 0])
    aux = _auxk(coder, pre, xin, b_in, W_enc, (y - y_hat).detach(), dead, variance) if auxk_alpha > 0 \
        else x.new_zeros(())
    return whole_batch(ranks, recon + auxk_alpha * aux, full.detach(), aux.detach(), _fired(coder, sel, acts),
                       int((acts.detach() > 0).sum()), n_total, min_selected)


def _nested_fvu(coder: SparseCoder, sel: Selection, acts: Tensor, x: Tensor, y: Tensor, total_variance: Tensor,
                groups: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """Matryoshka (Bussmann et al. 2025): mean FVU of the reconstructions from each prefix of
    groups; a single group is plain BatchTopK. Returns (loss, FVU of the full one, full ŷ)."""
    n = x.shape[0]
    y_hat = coder.b_dec + _skip(coder, x)  # [N, d_out] (broadcast until the first group)
    losses = []
    start = 0
    for size in groups:
        keep = (sel.cols >= start) & (sel.cols < start + size) if len(groups) > 1 else None
        part, a = (subset(sel, keep), acts[keep]) if keep is not None else (sel, acts)
        y_hat = y_hat + decode_selected(a, part, coder.W_dec, n)
        losses.append(fvu(y, y_hat, total_variance))
        start += size
    return torch.stack(losses).mean(), losses[-1].detach(), y_hat


def _auxk(coder: SparseCoder, pre: Tensor, xin: Tensor, b_in: Tensor | None, W_enc: Tensor, residual: Tensor,
          dead: Tensor, total_variance: Tensor) -> Tensor:
    """AuxK (Gao et al. 2024, appendix A.2): the top k_aux dead latents predict the residual.

    pre [N, d_sae] (no grad), residual y − ŷ [N, d_out] (detached), dead bool [d_sae]. k_aux = d_out / 2
    (their heuristic), and the loss is scaled down when fewer latents than that are dead."""
    dead_idx = dead.nonzero().squeeze(1)
    n_dead = int(dead_idx.numel())
    if n_dead == 0:
        return residual.new_zeros(())
    k_aux = residual.shape[-1] // 2
    scale = min(n_dead / k_aux, 1.0)
    k_aux = min(k_aux, n_dead)
    sel = topk_selection(pre[:, dead_idx], k_aux)  # live latents cannot help
    sel = Selection(sel.rows, dead_idx[sel.cols], sel.pre)
    acts = torch.relu(encode_selected(xin, b_in, W_enc, coder.b_enc, sel))
    # no decoder bias: the dead latents model the residual, which already has the bias removed
    e_hat = decode_selected(acts, sel, coder.W_dec, residual.shape[0], per_token=k_aux)  # [N, d_out]
    return scale * (e_hat - residual).pow(2).sum() / total_variance


def crosscoder_objective(coder: SparseCoder, x: Tensor, dead: Tensor, k: int, auxk_alpha: float,
                         select_dtype: torch.dtype | None = None, ranks: Local = LOCAL) -> StepLoss:
    """The loss of one batch x [N, 2, d_in] (already divided by the activation scales): FVU(base) +
    FVU(target), each over its own model's variance, so a model with larger activations does not
    dominate, + auxk_alpha · AuxK. BatchTopK selects on f_j · Σ_m ‖d_j^m‖ (Lindsey et al. 2024);
    the selection does not backpropagate, the kept activations do. ranks: as `objective`."""
    n, s, d = x.shape
    n_total, variance = total_variance(x, (0, 2), ranks)  # [2]: each model normalised by its own
    xin, b_in, W_enc = _encoder(coder, x)
    pre = dense_pre(xin, b_in, W_enc, coder.b_enc, select_dtype or coder.dtype)  # [N, d_sae], no grad
    with torch.no_grad():
        norms = code_norms(coder)  # [d_sae]
        scores = torch.relu(pre) * norms.to(pre.dtype)
    sel = batch_topk_selection(scores, k, pre=pre, ranks=ranks, n_total=n_total)
    acts = torch.relu(encode_selected(xin, b_in, W_enc, coder.b_enc, sel))  # [E]
    W_dec = coder.W_dec.reshape(coder.d_sae, s * d)
    x_hat = decode_selected(acts, sel, W_dec, n).view(n, s, d) + coder.b_dec
    fvu_ = (x - x_hat).pow(2).sum((0, 2)) / variance  # [2]
    aux = _crosscoder_auxk(coder, pre, scores, xin, b_in, W_enc, (x - x_hat).detach(), dead, variance) \
        if auxk_alpha > 0 else x.new_zeros(())
    score = acts.detach() * norms[sel.cols]
    return whole_batch(ranks, fvu_.sum() + auxk_alpha * aux, fvu_.detach(), aux.detach(), _fired(coder, sel, acts),
                       int((acts.detach() > 0).sum()), n_total, smallest(score[score > 0]))


def _crosscoder_auxk(coder: SparseCoder, pre: Tensor, scores: Tensor, xin: Tensor, b_in: Tensor | None, W_enc: Tensor,
                     residual: Tensor, dead: Tensor, variance: Tensor) -> Tensor:
    """AuxK over both models: the top k_aux dead latents (by score) predict the residual [N, 2, d_in].
    k_aux = half the output width (2·d_in / 2), scaled down when fewer latents are dead."""
    dead_idx = dead.nonzero().squeeze(1)
    n_dead = int(dead_idx.numel())
    if n_dead == 0:
        return residual.new_zeros(())
    n, s, d = residual.shape
    k_aux = d
    scale = min(n_dead / k_aux, 1.0)
    k_aux = min(k_aux, n_dead)
    sel = topk_selection(scores[:, dead_idx], k_aux)  # selected by score
    cols = dead_idx[sel.cols]
    sel = Selection(sel.rows, cols, pre[sel.rows, cols])
    acts = torch.relu(encode_selected(xin, b_in, W_enc, coder.b_enc, sel))
    e_hat = decode_selected(acts, sel, coder.W_dec.reshape(coder.d_sae, s * d), n, per_token=k_aux).view(n, s, d)
    return scale * ((e_hat - residual).pow(2).sum((0, 2)) / variance).sum()


__all__ = ["StepLoss", "code_norms", "crosscoder_objective", "fvu", "objective", "smallest", "total_variance",
           "whole_batch"]
