"""The dense reference of the training objective: every latent's pre-activation, dense [N, d_sae] masks
and products, autograd's own backward. The sparse step (`objective.py`) is tested against it gradient for
gradient, and `bench/train.py` times both ("before" is this one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..coders import SparseCoder
from .objective import StepLoss, _skip, code_norms, fvu


def topk_forward(coder: SparseCoder, pre: Tensor, x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token top-k, decoded sparsely. Returns (y_hat [N, d_out], values [N, k], indices [N, k])."""
    values, indices = torch.relu(pre).topk(k, dim=-1, sorted=False)  # [N, k]
    # embedding_bag sums the k selected decoder rows weighted by their activations,
    # without materialising dense [N, d_sae] latents (sparsify does the same on CPU).
    y_hat = F.embedding_bag(indices, coder.W_dec, per_sample_weights=values, mode="sum") + coder.b_dec
    return y_hat + _skip(coder, x), values, indices


def batch_topk_latents(pre: Tensor, k: int) -> tuple[Tensor, float]:
    """BatchTopK: the k·N largest relu(pre) of the batch. Returns (latents [N, d_sae], smallest selected)."""
    flat = torch.relu(pre).flatten()  # [N * d_sae]
    values, indices = flat.topk(min(k * pre.shape[0], flat.numel()), sorted=False)
    latents = torch.zeros_like(flat).scatter(0, indices, values).view_as(pre)
    positive = values[values > 0]
    return latents, float(positive.min()) if positive.numel() else 0.0


def auxk_loss(coder: SparseCoder, pre: Tensor, residual: Tensor, dead: Tensor, total_variance: Tensor) -> Tensor:
    """AuxK (Gao et al. 2024, appendix A.2): the top k_aux dead latents predict the residual.

    pre [N, d_sae], residual y − ŷ [N, d_out] (detached), dead bool [d_sae]. k_aux = d_out / 2
    (their heuristic), and the loss is scaled down when fewer latents than that are dead.
    """
    n_dead = int(dead.sum())
    if n_dead == 0:
        return pre.new_zeros(())
    k_aux = residual.shape[-1] // 2
    scale = min(n_dead / k_aux, 1.0)
    k_aux = min(k_aux, n_dead)
    masked = torch.where(dead[None], torch.relu(pre), torch.zeros_like(pre))  # live latents cannot help
    values, indices = masked.topk(k_aux, dim=-1, sorted=False)  # [N, k_aux]
    # no decoder bias: the dead latents model the residual, which already has the bias removed
    e_hat = F.embedding_bag(indices, coder.W_dec, per_sample_weights=values, mode="sum")  # [N, d_out]
    return scale * (e_hat - residual).pow(2).sum() / total_variance


def dense_objective(coder: SparseCoder, x: Tensor, y: Tensor, dead: Tensor, auxk_alpha: float,
              groups: tuple[int, ...]) -> StepLoss:
    """The training loss of one batch. x [N, d_in] (encoder input), y [N, d_out] (target)."""
    cfg = coder.cfg
    pre = coder.pre_acts(x)  # [N, d_sae]
    total_variance = (y - y.mean(0)).pow(2).sum().clamp_min(1e-12)
    min_selected: float | None = None
    fired = torch.zeros(cfg.d_sae, dtype=torch.bool, device=pre.device)
    if cfg.architecture == "topk":
        y_hat, values, indices = topk_forward(coder, pre, x, cfg.k)
        recon = full = fvu(y, y_hat, total_variance)
        fired[indices[values > 0]] = True
        n_active = int((values > 0).sum())
    else:
        latents, min_selected = batch_topk_latents(pre, cfg.k)
        recon, full, y_hat = _nested_fvu(coder, latents, x, y, total_variance, groups)
        fired = (latents > 0).any(0)
        n_active = int((latents > 0).sum())
    aux = auxk_loss(coder, pre, (y - y_hat).detach(), dead, total_variance) if auxk_alpha > 0 else pre.new_zeros(())
    return StepLoss(loss=recon + auxk_alpha * aux, fvu=full.detach(), aux_loss=aux.detach(),
                    fired=fired, l0=n_active / max(1, x.shape[0]), min_selected=min_selected,
                    n=x.shape[0])


def _nested_fvu(coder: SparseCoder, latents: Tensor, x: Tensor, y: Tensor, total_variance: Tensor,
                groups: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """Matryoshka (Bussmann et al. 2025): mean FVU of the reconstructions from each prefix of
    groups; a single group is plain BatchTopK. Returns (loss, FVU of the full one, full ŷ)."""
    y_hat = coder.b_dec + _skip(coder, x)  # [N, d_out] (broadcast until the first group)
    losses = []
    start = 0
    for size in groups:
        y_hat = y_hat + latents[:, start : start + size] @ coder.W_dec[start : start + size]
        losses.append(fvu(y, y_hat, total_variance))
        start += size
    return torch.stack(losses).mean(), losses[-1].detach(), y_hat


def dense_crosscoder_objective(coder: SparseCoder, x: Tensor, dead: Tensor, k: int, auxk_alpha: float) -> StepLoss:
    """The loss of one batch x [N, 2, d_in] (already divided by the activation scales): FVU(base) +
    FVU(target), each over its own model's variance, so a model with larger activations does not
    dominate, + auxk_alpha · AuxK. BatchTopK selects on f_j · Σ_m ‖d_j^m‖ (Lindsey et al. 2024)."""
    n = x.shape[0]
    acts = torch.relu(coder.pre_acts(x))  # [N, d_sae]
    scores = acts * code_norms(coder)  # the selection does not backpropagate; the kept acts do
    values, indices = scores.detach().flatten().topk(min(k * n, scores.numel()), sorted=False)
    keep = torch.zeros(scores.numel(), dtype=torch.bool, device=x.device)
    keep[indices[values > 0]] = True
    latents = acts * keep.view_as(acts)
    x_hat = coder.decode(latents)  # [N, 2, d_in]
    variance = (x - x.mean(0)).pow(2).sum((0, 2)).clamp_min(1e-12)  # [2]: each model normalised by its own
    fvu_ = (x - x_hat).pow(2).sum((0, 2)) / variance  # [2]
    aux = _crosscoder_auxk(coder, acts, scores, (x - x_hat).detach(), dead, variance) if auxk_alpha > 0 \
        else x.new_zeros(())
    positive = values[values > 0]
    return StepLoss(loss=fvu_.sum() + auxk_alpha * aux, fvu=fvu_.detach(), aux_loss=aux.detach(),
                    fired=keep.view_as(acts).any(0), l0=int(keep.sum()) / max(1, n),
                    min_selected=float(positive.min()) if positive.numel() else 0.0, n=n)


def _crosscoder_auxk(coder: SparseCoder, acts: Tensor, scores: Tensor, residual: Tensor, dead: Tensor,
                     variance: Tensor) -> Tensor:
    """AuxK over both models: the top k_aux dead latents (by score) predict the residual [N, 2, d_in].
    k_aux = half the output width (2·d_in / 2), scaled down when fewer latents are dead."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return acts.new_zeros(())
    k_aux = residual.shape[-1]
    scale = min(n_dead / k_aux, 1.0)
    masked = torch.where(dead[None], scores.detach(), torch.full_like(scores, -1.0))
    idx = masked.topk(min(k_aux, n_dead), dim=-1, sorted=False).indices  # [N, k_aux]
    aux_latents = torch.zeros_like(acts).scatter(-1, idx, acts.gather(-1, idx))
    e_hat = torch.einsum("nf,fsd->nsd", aux_latents, coder.W_dec)  # no bias: the residual has none
    return scale * ((e_hat - residual).pow(2).sum((0, 2)) / variance).sum()


__all__ = ["batch_topk_latents", "dense_crosscoder_objective", "dense_objective", "topk_forward"]
