"""Probes of the first-letter task: the 26-way letter probe and the k-sparse latent probes.

Both follow SAEBench's `probing.py` / `k_sparse_probing.py` (Chanin et al. 2024): one-vs-rest
logistic regression trained with BCE and a positive-class weight (n_neg / n_pos), Adam with an
exponentially decaying learning rate; the latent probe adds an L1 penalty that picks, per letter,
the latents that predict it; k-sparse probes are then sklearn logistic regressions
(class_weight="balanced") on the top-k latents of that L1 probe.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


class SparseRows(NamedTuple):
    """Latent activations of N inputs, stored as the non-zeros of each row (zero-padded)."""

    idx: Tensor
    """[N, m] int64 latent ids; padding entries have id 0 and value 0."""
    val: Tensor
    """[N, m] float32 activations."""
    width: int
    """d_sae."""

    def dense(self, rows: Tensor | None = None) -> Tensor:
        """[n, d_sae] dense latents of `rows` (all rows when None)."""
        idx, val = (self.idx, self.val) if rows is None else (self.idx[rows], self.val[rows])
        return torch.zeros(idx.shape[0], self.width).scatter_add_(1, idx, val)

    def columns(self, latents: Tensor, chunk: int = 4096) -> Tensor:
        """[N, k] activations of the k given latents on every row."""
        out = []
        for s in range(0, self.idx.shape[0], chunk):
            hit = self.idx[s:s + chunk, :, None] == latents  # [c, m, k]
            out.append((self.val[s:s + chunk, :, None] * hit).sum(1))
        return torch.cat(out) if out else torch.zeros(0, len(latents))


@torch.inference_mode()
def encode_sparse(coder, acts: Tensor, chunk: int = 2048) -> SparseRows:
    """Encode acts [N, d_in] with `coder` in chunks; keep each row's non-zeros."""
    parts = []
    for s in range(0, acts.shape[0], chunk):
        z = coder.encode(acts[s:s + chunk].to(coder.device)).float().cpu()  # [c, d_sae]
        m = max(1, int((z != 0).sum(1).max()))
        val, idx = z.abs().topk(m, dim=1)
        parts.append((idx, z.gather(1, idx) * (val > 0)))
    m = max(p[0].shape[1] for p in parts)
    idx = torch.cat([F.pad(i, (0, m - i.shape[1])) for i, _ in parts])
    val = torch.cat([F.pad(v, (0, m - v.shape[1])) for _, v in parts])
    return SparseRows(idx, val, coder.cfg.d_sae)


@dataclass(frozen=True)
class ProbeTraining:
    """Optimiser settings of a one-vs-rest probe (SAEBench's values are AbsorptionConfig's defaults)."""

    epochs: int
    lr: float
    end_lr: float
    weight_decay: float
    batch_size: int
    l1: float = 0.0
    """Penalty l1 * mean over probes of sum |w| (the k-sparse latent probe); 0 for the letter probe."""


def train_probe(x: Tensor | SparseRows, labels: Tensor, n_classes: int, opt: ProbeTraining,
                seed: int) -> tuple[Tensor, Tensor]:
    """One-vs-rest logistic regression probes on x ([N, F] dense, or sparse latent rows).

    labels [N] ints in [0, n_classes). Returns (W [n_classes, F], b [n_classes]); logit > 0 means
    "this class". Deterministic for a given seed.
    """
    gen = torch.Generator().manual_seed(seed)
    n, width = (x.idx.shape[0], x.width) if isinstance(x, SparseRows) else x.shape
    bound = 1 / math.sqrt(width)  # nn.Linear's initialisation
    Wt = ((torch.rand(width, n_classes, generator=gen) * 2 - 1) * bound).requires_grad_()  # [F, C]
    b = ((torch.rand(n_classes, generator=gen) * 2 - 1) * bound).requires_grad_()
    y = F.one_hot(labels, n_classes).float()  # [N, C]
    n_pos = y.sum(0)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=(n - n_pos) / n_pos.clamp_min(1))
    optim = torch.optim.Adam([Wt, b], lr=opt.lr, weight_decay=opt.weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(optim, gamma=(opt.end_lr / opt.lr) ** (1 / opt.epochs))
    with torch.enable_grad():
        for _ in range(opt.epochs):
            for rows in torch.randperm(n, generator=gen).split(opt.batch_size):
                if isinstance(x, SparseRows):
                    logits = F.embedding_bag(x.idx[rows], Wt, per_sample_weights=x.val[rows], mode="sum") + b
                else:
                    logits = x[rows] @ Wt + b  # [B, C]
                loss = loss_fn(logits, y[rows]) + opt.l1 * Wt.abs().sum(0).mean()
                optim.zero_grad()
                loss.backward()
                optim.step()
            sched.step()
    return Wt.detach().T.contiguous(), b.detach()


def probe_logits(x: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """x [N, F] -> logits [N, C]."""
    return x @ W.T + b


def f1(pred: Tensor, truth: Tensor) -> float:
    """Binary F1 of two bool vectors; 0.0 when there are no positives at all."""
    tp = int((pred & truth).sum())
    denom = 2 * tp + int((pred & ~truth).sum()) + int((~pred & truth).sum())
    return 2 * tp / denom if denom else 0.0


class MainLatents(NamedTuple):
    """The k-sparse probing result of one letter."""

    latents: list[int]
    """The main latents: top-k of the L1 probe at the last k whose F1 rose by more than the jump."""
    f1_by_k: list[float]
    """Test F1 of the k-sparse probe for k = 1, 2, ... up to the first k that did not rise."""
    not_converged: int
    """sklearn fits that hit max_iter (counted, not hidden)."""


def find_main_latents(l1_weights: Tensor, train: SparseRows, train_y: Tensor, test: SparseRows, test_y: Tensor,
                      max_k: int, f1_jump: float) -> MainLatents:
    """k-sparse probing of one letter (SAEBench's feature-splitting rule).

    l1_weights [d_sae]: this letter's row of the L1 latent probe. train_y / test_y [N] bool.
    For k = 1, 2, ...: fit a logistic regression on the top-k latents, score F1 on test
    (logit > 0); keep k while F1 rises by more than `f1_jump`.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    best, main, scores, not_converged = -math.inf, [], [], 0
    if not bool(train_y.any()) or bool(train_y.all()):
        return MainLatents([], [], 0)
    for k in range(1, min(max_k, train.width) + 1):
        ids = l1_weights.topk(k).indices
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf = LogisticRegression(max_iter=500, class_weight="balanced")
            clf.fit(train.columns(ids).numpy(), train_y.numpy().astype(np.int64))
        not_converged += sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        score = f1(torch.from_numpy(clf.decision_function(test.columns(ids).numpy()) > 0), test_y)
        scores.append(score)
        if score <= best + f1_jump:
            break
        best, main = score, ids.tolist()
    return MainLatents(main, scores, not_converged)
