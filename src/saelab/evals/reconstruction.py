"""Reconstruction metrics, accumulated over batches in float64 (DESIGN.md §5).

- FVU = Σ‖x − x̂‖² / Σ‖x − μ‖², μ the mean of x over all evaluated tokens; explained
  variance = 1 − FVU. Σ‖x − μ‖² = Σ‖x‖² − N‖μ‖², so one pass suffices.
- `explained_variance_legacy`: SAELens/SAEBench's per-token figure
  mean_t(1 − ‖x_t − x̂_t‖² / ‖x_t − μ_batch‖²), μ_batch the mean of the batch, reported
  under that name. (SAEBench's batched `explained_variance` measures variance about zero
  and inflates the figure; saelab does not report it.)
- MSE (per element), mean cosine(x, x̂), mean ‖x̂‖/‖x‖, and the relative reconstruction
  bias γ = Σ‖x̂‖² / Σ x̂·x (Wright & Sharkey; γ < 1 means shrinkage).

Every figure is a ratio of sums, so ranks under torchrun accumulate their own batches and
`all_reduce` sums them (float64): the result equals one process's up to summation order.
The sums live on the CPU whatever device the batches come from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..distributed import active, max_over_ranks, sum_over_ranks


@dataclass
class ReconstructionStats:
    """Accumulates reconstruction error over batches of [N, d] targets and reconstructions."""

    n: int = 0
    d: int = 0
    sum_x: Tensor | None = field(default=None, repr=False)  # float64 [d]
    sum_sq_x: float = 0.0
    sum_sq_err: float = 0.0
    sum_legacy_ev: float = 0.0
    sum_cos: float = 0.0
    sum_l2_ratio: float = 0.0
    sum_sq_xhat: float = 0.0
    sum_dot: float = 0.0

    def update(self, x: Tensor, x_hat: Tensor) -> None:
        """x, x_hat: [N, d] (text positions only)."""
        if x.shape[0] == 0:
            return
        x, x_hat = x.detach().double(), x_hat.detach().double()
        if self.sum_x is None:
            self.d, self.sum_x = x.shape[1], torch.zeros(x.shape[1], dtype=torch.float64)
        err = (x - x_hat).pow(2).sum(-1)  # [N]
        tss_batch = (x - x.mean(0)).pow(2).sum(-1)  # [N]
        self.n += x.shape[0]
        self.sum_x += x.sum(0).cpu()
        self.sum_sq_x += float(x.pow(2).sum())
        self.sum_sq_err += float(err.sum())
        self.sum_legacy_ev += float((1 - err / tss_batch.clamp_min(1e-12)).sum())
        x_norm, xh_norm = x.norm(dim=-1), x_hat.norm(dim=-1)
        self.sum_cos += float(((x * x_hat).sum(-1) / (x_norm * xh_norm).clamp_min(1e-12)).sum())
        self.sum_l2_ratio += float((xh_norm / x_norm.clamp_min(1e-12)).sum())
        self.sum_sq_xhat += float(x_hat.pow(2).sum())
        self.sum_dot += float((x * x_hat).sum())

    _SCALARS = ("sum_sq_x", "sum_sq_err", "sum_legacy_ev", "sum_cos", "sum_l2_ratio", "sum_sq_xhat", "sum_dot")

    def all_reduce(self) -> None:
        """Sum every rank's accumulators into each rank's (nothing to do without a process group)."""
        if not active():
            return
        self.d = int(max_over_ranks(torch.tensor([self.d], dtype=torch.int64))[0])  # a rank may have no tokens
        sum_x = self.sum_x if self.sum_x is not None else torch.zeros(self.d, dtype=torch.float64)
        floats = sum_over_ranks(torch.cat([sum_x, torch.tensor([getattr(self, k) for k in self._SCALARS],
                                                               dtype=torch.float64)]))
        self.n = int(sum_over_ranks(torch.tensor([self.n], dtype=torch.int64))[0])
        self.sum_x = floats[: self.d]
        for k, v in zip(self._SCALARS, floats[self.d :].tolist()):
            setattr(self, k, v)

    def total_variance(self) -> float:
        """Σ‖x − μ‖² over all tokens."""
        assert self.sum_x is not None
        return self.sum_sq_x - float(self.sum_x.pow(2).sum()) / self.n

    def result(self) -> dict[str, Any]:
        if self.n == 0:
            return {"n_tokens": 0}
        fvu = self.sum_sq_err / max(self.total_variance(), 1e-30)
        return {
            "n_tokens": self.n,
            "fvu": fvu,
            "explained_variance": 1 - fvu,
            "explained_variance_legacy": self.sum_legacy_ev / self.n,
            "mse": self.sum_sq_err / (self.n * self.d),
            "cossim": self.sum_cos / self.n,
            "l2_ratio": self.sum_l2_ratio / self.n,
            "relative_reconstruction_bias": self.sum_sq_xhat / self.sum_dot if self.sum_dot else float("nan"),
        }
