"""Sparsity and utilisation of a dictionary's latents over evaluated tokens.

Everything is computed from counts (firings per latent, the histogram of active latents per
token) and one float64 sum, so under torchrun `all_reduce` makes every figure, the L0
quantiles included, equal to one process's (the counts exactly, L1 up to summation order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..distributed import active, sum_over_ranks

DENSE_THRESHOLDS = (0.01, 0.1)


@dataclass
class SparsityStats:
    """Counts firings per latent and active latents per token ([N, d_sae] latents)."""

    d_sae: int
    n: int = 0
    fired: Tensor = field(init=False, repr=False)  # int64 [d_sae]
    l0_hist: Tensor = field(init=False, repr=False)  # int64 [d_sae + 1]: tokens with exactly j active latents
    sum_l1: float = 0.0

    def __post_init__(self) -> None:
        self.fired = torch.zeros(self.d_sae, dtype=torch.int64)
        self.l0_hist = torch.zeros(self.d_sae + 1, dtype=torch.int64)

    def update(self, latents: Tensor) -> None:
        """latents: [N, d_sae] (text positions only)."""
        active = latents != 0
        self.n += latents.shape[0]
        self.fired += active.sum(0).cpu()
        self.l0_hist += torch.bincount(active.sum(-1).cpu(), minlength=self.d_sae + 1)
        self.sum_l1 += float(latents.detach().abs().double().sum())

    def all_reduce(self) -> None:
        """Sum every rank's counts into each rank's (nothing to do without a process group)."""
        if not active():
            return
        counts = sum_over_ranks(torch.cat([torch.tensor([self.n], dtype=torch.int64), self.fired, self.l0_hist]))
        self.n, self.fired, self.l0_hist = int(counts[0]), counts[1 : self.d_sae + 1], counts[self.d_sae + 1 :]
        self.sum_l1 = float(sum_over_ranks(torch.tensor([self.sum_l1], dtype=torch.float64))[0])

    def frequencies(self) -> np.ndarray:
        """Firing frequency of each latent: fraction of evaluated tokens it fires on."""
        return (self.fired.double() / max(self.n, 1)).numpy()

    def result(self) -> dict[str, Any]:
        freq = self.frequencies()
        l0 = torch.arange(self.d_sae + 1, dtype=torch.float64)
        counts = self.l0_hist.double()
        mean_l0 = float((l0 * counts).sum() / max(self.n, 1))
        cdf = torch.cumsum(counts, 0) / max(self.n, 1)
        quantile = lambda q: int(torch.searchsorted(cdf, torch.tensor(q, dtype=torch.float64)))  # noqa: E731
        alive = freq[freq > 0]
        edges = np.arange(-7.0, 0.5, 0.5)  # log10 firing frequency bins
        hist, _ = np.histogram(np.log10(alive), bins=edges) if alive.size else (np.zeros(len(edges) - 1, int), None)
        return {
            "n_tokens": self.n,
            "d_sae": self.d_sae,
            "l0": mean_l0,
            "l0_quantiles": {"p10": quantile(0.1), "p50": quantile(0.5), "p90": quantile(0.9), "max": quantile(1.0)},
            "l1": self.sum_l1 / max(self.n, 1),
            "dead_fraction": float((freq == 0).mean()),
            "n_dead": int((freq == 0).sum()),
            **{f"dense_fraction_gt_{int(t * 100)}pct": float((freq > t).mean()) for t in DENSE_THRESHOLDS},
            "firing_frequency_log10_histogram": {"bin_edges": edges.tolist(), "counts": hist.tolist(),
                                                 "n_dead_not_shown": int((freq == 0).sum())},
        }
