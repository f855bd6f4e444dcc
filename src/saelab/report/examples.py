"""Example windows with per-token activations, and a latent's activation histogram."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..latents.store import Entries, WindowMaxima
from .model_view import ModelView

VISIBLE = {"\n": "↵", "\r": "", "\t": "⇥"}


def visible(text: str) -> str:
    """Token text with newlines and tabs shown as symbols (the page escapes it; this only makes it visible)."""
    for k, v in VISIBLE.items():
        text = text.replace(k, v)
    return text


def examples(entries: Entries, maxima: WindowMaxima, tokens: torch.Tensor, view: ModelView, latent_max: float,
             before: int, after: int) -> list[dict[str, Any]]:
    """One example per window of `maxima`: tokens around the maximum with their activations.

    Args:
        entries: every activation of the latent, ordered by (window, position).
        maxima: the windows to show, with the maximum and its position in each.
        tokens: int [n_windows, ctx_len], the workspace's token windows.
        latent_max: the latent's maximum over the store (colour scale: 1 = full colour).
    """
    out = []
    ctx = tokens.shape[1]
    for w, vmax, pos in zip(maxima.windows.tolist(), maxima.values.tolist(), maxima.positions.tolist()):
        lo_e, hi_e = np.searchsorted(entries.windows, [w, w + 1])
        acts = np.zeros(ctx, np.float32)
        acts[entries.positions[lo_e:hi_e]] = entries.values[lo_e:hi_e]
        lo, hi = max(0, pos - before), min(ctx, pos + after + 1)
        texts = view.text(tokens[w, lo:hi].tolist())
        scale = max(latent_max, 1e-12)
        out.append({"window": w, "max": round(vmax, 3), "tokens": [
            {"text": visible(t), "act": round(float(a), 3), "alpha": round(min(max(float(a) / scale, 0.0), 1.0), 2),
             "peak": lo + i == pos} for i, (t, a) in enumerate(zip(texts, acts[lo:hi]))]})
    return out


def histogram(values: np.ndarray, bins: int, n_tokens: int) -> dict[str, Any] | None:
    """Bars of an inline SVG histogram of the non-zero activation values (None without any)."""
    if values.size == 0:
        return None
    counts, edges = np.histogram(values, bins=bins)
    top = int(counts.max())
    width, height = 300.0, 120.0
    bw = width / bins
    bars = [{"x": round(i * bw, 2), "w": round(bw * 0.92, 2), "h": round(height * c / top, 2),
             "y": round(height - height * c / top, 2), "count": int(c),
             "lo": round(float(edges[i]), 3), "hi": round(float(edges[i + 1]), 3)} for i, c in enumerate(counts)]
    return {"bars": bars, "width": width, "height": height, "x_min": round(float(edges[0]), 3),
            "x_max": round(float(edges[-1]), 3), "y_max": top, "n": int(values.size),
            "percent": 100.0 * values.size / max(n_tokens, 1)}


def quantile_groups(store: Any, latent: int, n_quantiles: int, per_quantile: int,
                    seed: int) -> list[tuple[str, WindowMaxima]]:
    """(label, windows) per quantile group, highest group first."""
    if n_quantiles == 0 or per_quantile == 0:
        return []
    groups = store.quantile_sample(latent, n_quantiles, per_quantile, seed)
    out = []
    for i, g in reversed(list(enumerate(groups))):
        if g.windows.size:
            label = f"quantile {i + 1} of {n_quantiles} (window maxima {g.values.min():.3g}–{g.values.max():.3g})"
            order = np.argsort(-g.values, kind="stable")
            out.append((label, WindowMaxima(g.windows[order], g.values[order], g.positions[order])))
    return out
