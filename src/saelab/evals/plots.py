"""Comparison plots (`saelab.render.plots`): FVU vs L0, firing-frequency histograms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..render.plots import figure, save


def fvu_vs_l0(results: dict[str, dict[str, Any]], path: Path) -> Path:
    fig, ax = figure(5, 4)
    for name, m in results.items():
        fvu, l0 = m.get("reconstruction", {}).get("fvu"), m.get("sparsity", {}).get("l0")
        if fvu is None:
            continue
        if l0 is None:  # dense map: its active dimensions
            l0 = m["dictionary"].get("k") or m["dictionary"].get("d_in")
        ax.scatter([l0], [fvu], s=60, label=name)
        ax.annotate(name, (l0, fvu), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("L0 (active latents per token)")
    ax.set_ylabel("FVU (fraction of variance unexplained)")
    ax.set_title("Reconstruction vs sparsity (lower-left is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def frequency_histograms(results: dict[str, dict[str, Any]], path: Path) -> Path:
    fig, ax = figure(6, 4)
    for name, m in results.items():
        h = m.get("sparsity", {}).get("firing_frequency_log10_histogram")
        if not h:
            continue
        edges, counts = h["bin_edges"], h["counts"]
        ax.stairs(counts, edges, label=f"{name} ({h['n_dead_not_shown']} dead not shown)", linewidth=1.5)
    ax.set_xlabel("log10 firing frequency (fraction of tokens)")
    ax.set_ylabel("number of latents")
    ax.set_title("Firing frequency of latents")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)

