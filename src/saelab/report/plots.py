"""The report's plots, as SVG (`saelab.render.plots`: Agg backend, text kept as text)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..render.plots import figure, save


def frequency_histogram(per_token: np.ndarray, name: str, path: Path) -> Path:
    """log10 firing frequency of the latents that fire; dead latents counted in the title."""
    fig, ax = figure()
    alive = per_token[per_token > 0]
    if alive.size:
        ax.hist(np.log10(alive), bins=40, color="#3b6ea5")
    ax.set_xlabel("log10 firing frequency (fraction of text tokens)")
    ax.set_ylabel("number of latents")
    ax.set_title(f"{name}: {alive.size:,} latents fire, {per_token.size - alive.size:,} dead")
    ax.grid(alpha=0.3)
    return save(fig, path)


def coverage_curve(cfg: dict[str, Any], path: Path) -> Path:
    """Fraction of narrow latents with a partner above each threshold, against the rotated baseline."""
    fig, ax = figure()
    labels = {"one_to_one": "one-to-one", "many_to_one": "many-to-one", "baseline_one_to_one": "baseline (rotated)"}
    for key, points in cfg.get("curves", {}).items():
        xs = [p["threshold"] for p in points]
        ys = [p["fraction"] for p in points]
        ax.plot(xs, ys, label=labels.get(key, key), linestyle="--" if "baseline" in key else "-")
    if cfg.get("match_threshold") is not None:
        ax.axvline(cfg["match_threshold"], color="grey", linewidth=0.8, label=f"threshold {cfg['match_threshold']}")
    ax.set_xlabel(f"match quality threshold ({cfg.get('primary_signal', 'score').replace('_', ' ')})")
    ax.set_ylabel(f"fraction of {cfg.get('headline', {}).get('narrow', 'narrow')} latents matched")
    ax.set_title("Coverage vs quality")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def ndcg_distribution(ndcg: np.ndarray, baseline: np.ndarray, model: str, path: Path) -> Path:
    """Per-latent NDCG against the shuffled-explanation baseline."""
    fig, ax = figure()
    bins = np.linspace(0, 1, 41)
    ax.hist(ndcg, bins=bins, alpha=0.7, label=f"NDCG (mean {np.mean(ndcg):.3f})", color="#3b6ea5")
    ax.hist(baseline, bins=bins, alpha=0.5, label=f"shuffled baseline (mean {np.mean(baseline):.3f})", color="#c0504d")
    ax.set_xlabel(f"NDCG of φ neighbours vs explanation similarity ({model})")
    ax.set_ylabel("number of latents")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)
