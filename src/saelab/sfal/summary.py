"""SFAL outputs: per-latent CSV, masked latents, aggregates with the random baseline,
correlation with auto-interp scores, a Markdown summary and the distribution plot."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path, write_text
from ..render.plots import figure, save
from .explanations import Explanations, read_records

log = logging.getLogger(__name__)


def aggregate(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean/median NDCG and overlap, and the baseline mean ± sd across permutations."""
    base = scores["ndcg_permuted"]  # [n_permutations, m]
    base_ov = scores["overlap_permuted"]
    return {"n_scored": int(scores["ndcg"].size), "ndcg_mean": float(np.mean(scores["ndcg"])),
            "ndcg_median": float(np.median(scores["ndcg"])), "baseline_ndcg_mean": float(base.mean()),
            "baseline_ndcg_sd": float(base.mean(axis=1).std()), "overlap_mean": float(np.mean(scores["overlap"])),
            "baseline_overlap_mean": float(base_ov.mean()), "baseline_overlap_sd": float(base_ov.mean(axis=1).std())}


def correlations(latents: np.ndarray, ndcg: np.ndarray, path: str | Path | None) -> list[dict[str, Any]]:
    """Pearson and Spearman r of per-latent NDCG with each numeric column of an auto-interp
    score table (`latent` + columns such as detection, fuzz); [] when there is none."""
    if path is None:
        return []
    from scipy.stats import pearsonr, spearmanr

    records = read_records(path)
    by_latent = {int(r["latent"]): r for r in records}
    out = []
    for column in [c for c in (records[0] if records else {}) if c != "latent"]:
        pairs = []
        for latent, value in zip(latents.tolist(), ndcg.tolist()):
            try:
                pairs.append((value, float(by_latent[latent][column])))
            except (KeyError, TypeError, ValueError):
                continue
        x, y = np.array(pairs).T if pairs else (np.zeros(0), np.zeros(0))
        if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:  # constant: r undefined
            out.append({"score": column, "n": int(x.size), "pearson": None, "spearman": None})
            continue
        out.append({"score": column, "n": int(x.size), "pearson": float(pearsonr(x, y)[0]),
                    "spearman": float(spearmanr(x, y)[0])})
    return out


def write_csv(path: Path, expl: Explanations, latents: np.ndarray, window_counts: np.ndarray,
              per_model: dict[str, dict[str, np.ndarray]], overlap_k: int) -> None:
    """One row per scored latent; per model: ndcg, its permutation-baseline mean, overlap@k."""
    header = ["latent", "explanation_kind", "explanation", "window_count"]
    for model in per_model:
        header += [f"ndcg[{model}]", f"ndcg_baseline[{model}]", f"overlap@{overlap_k}[{model}]",
                   f"overlap@{overlap_k}_baseline[{model}]"]
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row, latent in enumerate(latents.tolist()):
            line: list[Any] = [latent, expl.kind, expl.texts[latent], int(window_counts[latent])]
            for s in per_model.values():
                line += [f"{s['ndcg'][row]:.6f}", f"{s['ndcg_permuted'][:, row].mean():.6f}",
                         f"{s['overlap'][row]:.4f}", f"{s['overlap_permuted'][:, row].mean():.4f}"]
            w.writerow(line)


def write_masked(path: Path, dead: np.ndarray, unexplained: np.ndarray) -> None:
    rows = sorted([(int(i), "dead (fires in no window)") for i in dead] +
                  [(int(i), "unexplained") for i in unexplained])
    write_text(path, "latent,reason\n" + "".join(f"{i},{r}\n" for i, r in rows))


def plot(path: Path, per_model: dict[str, dict[str, np.ndarray]]) -> None:
    fig, axes = figure(5 * len(per_model), 3.5, ncols=len(per_model), squeeze=False)
    for ax, (model, s) in zip(axes[0], per_model.items()):
        bins = np.linspace(0, 1, 41)
        ax.hist(s["ndcg"], bins=bins, alpha=0.7, label="explanations")
        ax.hist(s["ndcg_permuted"][0], bins=bins, alpha=0.5, label="shuffled (baseline)")
        ax.set(xlabel="NDCG (φ neighbours vs explanation similarity)", ylabel="latents", title=model)
        ax.legend()
    save(fig, path)


def markdown(cfg: dict[str, Any], expl: Explanations, aggregates: dict[str, dict[str, float]],
             corr: dict[str, list[dict[str, Any]]], masked: dict[str, int], plot_name: str) -> str:
    lines = [f"# SFAL alignment: {cfg['dictionary']}", "",
             f"Explanations: **{expl.kind}** from `{expl.source}` — {len(expl.texts)} latents explained; "
             f"skipped records: {dict(expl.skipped) or 'none'}.",
             f"Co-occurrence: N = {cfg['n_windows']} windows of k = {cfg['k']} tokens ({cfg['window']}, "
             f"partial windows: {cfg['partial']}). Masked from both rankings: {masked['dead']} dead, "
             f"{masked['unexplained']} unexplained (listed in masked.csv).",
             f"Rankings of length n = {cfg['n']} (top_n {cfg['top_n']}); relevance 1.1^(n − rank) − 1; baseline = "
             f"explanations shuffled across latents, {cfg['n_permutations']} permutations (mean ± sd).", "",
             f"| embeddings | scored | NDCG mean | NDCG median | baseline NDCG | overlap@{cfg['overlap_k']} "
             "| baseline overlap |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for model, a in aggregates.items():
        lines.append(f"| {model} | {a['n_scored']} | {a['ndcg_mean']:.4f} | {a['ndcg_median']:.4f} | "
                     f"{a['baseline_ndcg_mean']:.4f} ± {a['baseline_ndcg_sd']:.4f} | {a['overlap_mean']:.4f} | "
                     f"{a['baseline_overlap_mean']:.4f} ± {a['baseline_overlap_sd']:.4f} |")
    for model, rows in corr.items():
        for r in rows:
            shown = "n/a (constant or < 3 latents)" if r["pearson"] is None else \
                f"Pearson {r['pearson']:.3f}, Spearman {r['spearman']:.3f}"
            lines.append(f"\nCorrelation of NDCG [{model}] with auto-interp `{r['score']}` over {r['n']} latents: "
                         f"{shown}.")
    if not any(corr.values()):
        lines.append("\nNo auto-interp scores given: no correlation reported (SFAL reports Pearson 0.66 with "
                     "human ratings on Gemma Scope, 0.37–0.44 on Llama Scope).")
    lines += ["", f"![NDCG distribution]({plot_name})", ""]
    return "\n".join(lines)
