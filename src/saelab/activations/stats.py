"""Running per-hookpoint statistics of activations (float64 accumulators, one pass)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class ActivationStats:
    """Accumulates norm and per-dimension moments over text positions, and sink norms apart."""

    d: int
    n_tokens: int = 0
    sum_norm: float = 0.0
    max_norm: float = 0.0
    n_nonfinite: int = 0
    sum_x: torch.Tensor = field(default=None)  # type: ignore[assignment]  # float64 [d]
    sum_x2: torch.Tensor = field(default=None)  # type: ignore[assignment]  # float64 [d]
    n_excluded: int = 0
    sum_norm_excluded: float = 0.0

    def __post_init__(self) -> None:
        self.sum_x = torch.zeros(self.d, dtype=torch.float64)
        self.sum_x2 = torch.zeros(self.d, dtype=torch.float64)

    def update(self, acts: torch.Tensor, mask: torch.Tensor) -> None:
        """acts: [batch, seq, d]; mask: bool [batch, seq] (True = text position)."""
        x = acts.detach().to("cpu", torch.float64)
        mask = mask.to(x.device)
        text, other = x[mask], x[~mask]  # [n, d]
        self.n_nonfinite += int((~torch.isfinite(text)).any(dim=-1).sum())
        norms = text.norm(dim=-1)
        self.n_tokens += text.shape[0]
        self.sum_norm += float(norms.sum())
        self.max_norm = max(self.max_norm, float(norms.max()) if norms.numel() else 0.0)
        self.sum_x += text.sum(0)
        self.sum_x2 += (text * text).sum(0)
        self.n_excluded += other.shape[0]
        self.sum_norm_excluded += float(other.norm(dim=-1).sum())

    def summary(self) -> dict[str, Any]:
        n = max(self.n_tokens, 1)
        mean = self.sum_x / n
        var = (self.sum_x2 / n - mean * mean).clamp_min(0)
        return {
            "n_tokens": self.n_tokens,
            "d": self.d,
            "mean_norm": self.sum_norm / n,
            "max_norm": self.max_norm,
            "mean_norm_of_mean": float(mean.norm()),
            "total_variance": float(var.sum()),
            "dim_variance_mean": float(var.mean()),
            "dim_variance_min": float(var.min()),
            "dim_variance_max": float(var.max()),
            "n_nonfinite_tokens": self.n_nonfinite,
            "n_excluded_positions": self.n_excluded,
            "mean_norm_excluded": self.sum_norm_excluded / max(self.n_excluded, 1),
        }
