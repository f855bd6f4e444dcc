"""Plots of a model diff, drawn with saelab's one matplotlib set-up (`saelab.render.plots`).

- `delta_norm_histogram`: Δnorm of the latents that fire, with the tag bands shaded
  (target-only < t, shared within t of 0.5, base-only > 1 − t).
- `layer_divergence`: per layer, the relative norm of the activation difference,
  1 − cosine and 1 − CKA; the crosscoder layers and the sweep's `changed_layer` marked.
- `category_bars`: per prompt category, the mean next-token KL (sweep) and how often the
  target-only / base-only / shared latents fire there (latent table).
- `draw_run`: all of them for one run, into any directory, in any format (the workspace report
  draws SVGs); `create_visualizations`: the run's own PNGs in `visualizations/`, redrawn only
  when the sweep or a latent table changed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from .._io import read_json, write_cfg
from ..render.plots import figure, save
from .load import layer_dir, read_run_config

TAG_COLOURS = {"target-only": "#c0392b", "base-only": "#2e6fb7", "shared": "#7f8c8d", "other": "#d4ac0d"}


def delta_norm_histogram(delta: Sequence[float], path: str | Path, *, threshold: float = 0.1,
                         title: str = "", n_dead: int = 0) -> Path:
    """Histogram of Δnorm (values in [0, 1]) with the tag bands; log counts so the tails show."""
    d = np.asarray(delta, dtype=np.float64)
    fig, ax = figure(6.4, 3.6)
    for lo, hi, tag in ((0.0, threshold, "target-only"), (0.5 - threshold, 0.5 + threshold, "shared"),
                        (1.0 - threshold, 1.0, "base-only")):
        n = int(((d >= lo) & (d <= hi)).sum()) if tag == "shared" else int(((d < hi) if lo == 0 else (d > lo)).sum())
        ax.axvspan(lo, hi, color=TAG_COLOURS[tag], alpha=0.15, label=f"{tag}: {n:,}")
    ax.hist(d, bins=50, range=(0, 1), color="#34495e")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel("Δnorm  (0: only the target model's decoder is used · 1: only the base model's)")
    ax.set_ylabel("latents (log)")
    dead = f"; {n_dead:,} latents that never fired not shown" if n_dead else ""
    ax.set_title(title or f"Δnorm of {d.size:,} latents{dead}", fontsize=10)
    ax.legend(fontsize=8, loc="upper center")
    return save(fig, path)


def layer_divergence(table: list[dict[str, float]], path: str | Path, *, crosscoder_layers: Sequence[int] = (),
                     changed_layer: int | None = None) -> Path:
    """Per-layer divergence from `SweepResult.layer_table()` rows (layer, rel_norm, cosine, cka)."""
    layers = [r["layer"] for r in table]
    fig, ax = figure(6.4, 3.6)
    ax.plot(layers, [r["rel_norm"] for r in table], "o-", label="relative norm of the difference")
    ax.plot(layers, [1 - r["cosine"] for r in table], "s-", label="1 − cosine")
    ax.plot(layers, [1 - r["cka"] if r["cka"] == r["cka"] else np.nan for r in table], "^-",
            label="1 − CKA (debiased)")
    for i, layer in enumerate(crosscoder_layers):
        ax.axvline(layer, color="#c0392b", linestyle="--", linewidth=1, label="crosscoder layer" if i == 0 else None)
    if changed_layer is not None:
        ax.axvline(changed_layer, color="#7d3c98", linestyle=":", linewidth=1.5,
                   label=f"largest increase (layer {changed_layer})")
    ax.set_xlabel("layer (residual stream after the block)")
    ax.set_ylabel("divergence, base vs target")
    ax.set_title("Where the two models' activations diverge", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def category_bars(groups: list[str], kl_by_group: dict[str, float] | None, freq_by_tag: dict[str, list[float]],
                  path: str | Path, *, title: str = "") -> Path:
    """Two panels over the groups (corpus + categories): mean KL(P_target ‖ P_base), and the mean firing
    frequency (% of tokens) of the latents of each tag."""
    x = np.arange(len(groups))
    fig, (a, b) = figure(10, 3.8, ncols=2)
    kl = [kl_by_group.get(g, np.nan) if kl_by_group else np.nan for g in groups]
    a.bar(x, kl, color="#7d3c98")
    a.set_title("mean next-token KL(target ‖ base), nats", fontsize=10)
    tags = [t for t in ("target-only", "base-only", "shared") if t in freq_by_tag]
    width = 0.8 / max(len(tags), 1)
    for i, tag in enumerate(tags):
        b.bar(x + (i - (len(tags) - 1) / 2) * width, 100 * np.asarray(freq_by_tag[tag]), width,
              color=TAG_COLOURS[tag], label=tag)
    b.set_title(title or "mean firing frequency of a latent, by tag (% of tokens)", fontsize=10)
    b.legend(fontsize=8)
    for ax in (a, b):
        ax.set_xticks(x, groups, rotation=35, ha="right", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    return save(fig, path)


def draw_run(output_dir: str | Path, directory: str | Path, *, prefix: str = "",
             suffix: str = ".png") -> dict[str, Path]:
    """Every plot of a diff run into `directory`, named `PREFIX + name + suffix` (the suffix picks the format).

    Returns {name: path} with names `layer_divergence` (when the run has a sweep), `delta_norm_layer_LL` and
    `categories_layer_LL` (per layer with a latent table).

    Example:
        >>> draw_run("diff-run", "site/plots", prefix="diff-run-", suffix=".svg")["layer_divergence"]
        PosixPath('site/plots/diff-run-layer_divergence.svg')
    """
    out, directory = Path(output_dir), Path(directory)
    run = read_run_config(out)
    sweep_path = out / "activations" / "sweep" / "sweep.json"
    sweep = read_json(sweep_path) if sweep_path.exists() else None
    path = lambda name: directory / f"{prefix}{name}{suffix}"  # noqa: E731
    drawn = {}
    if sweep:
        rows = [{"layer": l, "rel_norm": r, "cosine": c, "cka": k}
                for l, r, c, k in zip(sweep["layers"], sweep["rel_norm"], sweep["cosine"], sweep["cka"])]
        drawn["layer_divergence"] = layer_divergence(rows, path("layer_divergence"), crosscoder_layers=run["layers"],
                                                     changed_layer=sweep["changed_layer"])
    for layer in run["layers"]:
        table_path = layer_dir(out, layer) / "latent_table.json"
        if not table_path.exists():
            continue
        t = read_json(table_path)
        alive = [r["delta_norm"] for r in t["latents"] if r["count"] > 0]
        name = f"delta_norm_layer_{layer:02d}"
        drawn[name] = delta_norm_histogram(alive, path(name), threshold=t["threshold"], n_dead=t["n_dead"],
                                           title=f"Layer {layer}: Δnorm of the {len(alive):,} latents that fire")
        name = f"categories_layer_{layer:02d}"
        drawn[name] = category_bars(t["groups"], sweep["kl_by_group"] if sweep else None, t["tag_by_group"], path(name))
    return drawn


def create_visualizations(output_dir: str | Path) -> list[Path]:
    """PNG plots of a run (Δnorm histograms, layer divergence, per-category bars) into `visualizations/`;
    kept as they are when drawn from the very same sweep and latent tables (their cfg.json says so)."""
    out = Path(output_dir)
    vis = out / "visualizations"
    inputs = _plot_inputs(out, read_run_config(out)["layers"])
    if (vis / "cfg.json").exists():
        cfg = read_json(vis / "cfg.json")
        if cfg.get("inputs") == inputs and all((vis / f).exists() for f in cfg["files"]):
            return [vis / f for f in cfg["files"]]
    written = list(draw_run(out, vis).values())
    write_cfg(vis, {"artifact": "diff_visualizations", "files": [p.name for p in written], "inputs": inputs})
    return written


def _plot_inputs(out: Path, layers: list[int]) -> str:
    """Fingerprint of what the plots are drawn from (the sweep and the latent tables)."""
    h = hashlib.sha256()
    for p in [out / "activations" / "sweep" / "sweep.json", *(layer_dir(out, l) / "latent_table.json" for l in layers)]:
        h.update(p.read_bytes() if p.exists() else b"-")
    return h.hexdigest()[:16]
