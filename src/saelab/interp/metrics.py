"""Metrics of scored records, per latent and pooled. Failed records are counted, never scored.

- classification (detection, fuzz, recall, embedding, surprisal): pooled = micro, every example of
  every latent in one confusion matrix;
- simulation: Pearson r of predicted vs true activations, per example, per latent, over latents;
- choice (intruder): accuracy against chance 1/N;
- `compare`: one variant's per-latent score against another's on the same latents (paired bootstrap
  CI of the mean difference, one-sided Wilcoxon signed-rank p) — "measurably above chance" as a measurement.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np


def classification(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """precision, recall, F1, accuracy, balanced accuracy, AUC (where probabilities exist and both
    classes are present), n_examples (scored), n_failed. A metric without data is None."""
    records = list(records)
    ok = [r for r in records if not r["failed"]]
    y = np.array([r["label"] for r in ok], np.int64)
    p = np.array([r["prediction"] for r in ok], np.int64)
    tp, fp = int(((p == 1) & (y == 1)).sum()), int(((p == 1) & (y == 0)).sum())
    fn, tn = int(((p == 0) & (y == 1)).sum()), int(((p == 0) & (y == 0)).sum())
    div = lambda a, b: a / b if b else None  # noqa: E731
    precision, recall, tnr = div(tp, tp + fp), div(tp, tp + fn), div(tn, tn + fp)
    f1 = div(2 * tp, 2 * tp + fp + fn)
    balanced = None if recall is None or tnr is None else (recall + tnr) / 2
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": div(tp + tn, len(ok)),
            "balanced_accuracy": balanced, "auc": auc(ok), "n_examples": len(ok),
            "n_failed": len(records) - len(ok), "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def auc(records: list[dict[str, Any]]) -> float | None:
    """ROC-AUC of `probability` against `label` (ties count half); None without both classes."""
    scored = [r for r in records if r.get("probability") is not None]
    if len(scored) < len(records) or not scored:
        return None
    y = np.array([r["label"] for r in scored])
    s = np.array([r["probability"] for r in scored], np.float64)
    pos, neg = s[y == 1], s[y == 0]
    if not pos.size or not neg.size:
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


def pearson(x: Iterable[float], y: Iterable[float]) -> float | None:
    """Pearson r; None where either side is constant (r is undefined there)."""
    a, b = np.asarray(list(x), np.float64), np.asarray(list(y), np.float64)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def simulation(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per latent: `pearson_r` over all tokens of its scored examples (OpenAI's "all at once" score),
    `mean_example_r` over the examples where r is defined (not on constant, e.g. non-activating, ones)."""
    records = list(records)
    ok = [r for r in records if not r["failed"]]
    true = [a for r in ok for a in r["activations"]]
    pred = [p for r in ok for p in r["prediction"]]
    per_example = [r["pearson_r"] for r in ok if r.get("pearson_r") is not None]
    return {"pearson_r": pearson(true, pred), "mean_example_r": _mean(per_example),
            "n_examples_r": len(per_example), "n_tokens": len(true), "n_examples": len(ok),
            "n_failed": len(records) - len(ok)}


def simulation_pooled(per_latent: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Over latents: the mean (and median) of the per-latent r, the mean per-example r, and `pooled_r`
    over every token of every latent with true activations divided by each latent's maximum (so that
    latents of different scales share one axis)."""
    per = {l: simulation(rs) for l, rs in per_latent.items()}
    rs = [m["pearson_r"] for m in per.values() if m["pearson_r"] is not None]
    true, pred = [], []
    for records in per_latent.values():
        ok = [r for r in records if not r["failed"]]
        top = max((a for r in ok for a in r["activations"]), default=0.0) or 1.0
        true += [a / top for r in ok for a in r["activations"]]
        pred += [p for r in ok for p in r["prediction"]]
    examples = [r["pearson_r"] for rs_ in per_latent.values() for r in rs_
                if not r["failed"] and r.get("pearson_r") is not None]
    return {"mean_latent_r": _mean(rs), "median_latent_r": float(np.median(rs)) if rs else None,
            "pooled_r": pearson(true, pred), "mean_example_r": _mean(examples), "n_latents_r": len(rs),
            "n_examples": sum(m["n_examples"] for m in per.values()),
            "n_failed": sum(m["n_failed"] for m in per.values())}


def choice(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Multiple choice (intruder): accuracy over answered questions, `chance` = mean 1/N, and the mean
    probability given to the right option where log-probs exist."""
    records = list(records)
    ok = [r for r in records if not r["failed"]]
    probs = [r["probability"] for r in ok if r.get("probability") is not None]
    return {"accuracy": _mean([float(r["correct"]) for r in ok]),
            "chance": _mean([1 / r["n_options"] for r in records]), "mean_probability": _mean(probs),
            "n_examples": len(ok), "n_failed": len(records) - len(ok)}


def choice_pooled(per_latent: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Every question of every latent together (micro), and the mean of the per-latent accuracies."""
    pooled = choice(r for rs in per_latent.values() for r in rs)
    accs = [m["accuracy"] for m in (choice(rs) for rs in per_latent.values()) if m["accuracy"] is not None]
    return {**pooled, "mean_latent_accuracy": _mean(accs)}


def classification_pooled(per_latent: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Micro (every example of every latent in one confusion matrix / one ROC), and `mean_latent_auc`, the
    mean of the per-latent AUCs (macro): a judge that is more willing to say yes to one explanation than to
    another shifts whole latents against each other in the micro AUC, never in the macro one."""
    aucs = [m["auc"] for m in (classification(rs) for rs in per_latent.values()) if m["auc"] is not None]
    return {**classification(r for rs in per_latent.values() for r in rs),
            "mean_latent_auc": _mean(aucs), "n_latents_auc": len(aucs)}


MIN_VERDICT_LATENTS = 10
"""Below this many paired latents a bootstrap CI is too unreliable to call anything "measurably above"."""


def compare(scores: dict[str, float | None], reference: dict[str, float | None], n_resamples: int = 2000,
            seed: int = 0, confidence: float = 0.95) -> dict[str, Any] | None:
    """Per-latent score minus the reference's on the latents where both exist: the mean difference, its
    confidence interval (paired bootstrap over latents, BCa; percentile where BCa is undefined) and the
    one-sided Wilcoxon signed-rank p of "higher than the reference". `above` is True when the interval's
    lower end is above 0 and p < 0.05, False when not, and None (no verdict) with fewer than
    MIN_VERDICT_LATENTS latents. None with fewer than 3 paired latents."""
    from scipy import stats

    keys = sorted(k for k in scores if scores[k] is not None and reference.get(k) is not None)
    if len(keys) < 3:
        return None
    a = np.array([scores[k] for k in keys], np.float64)
    d = a - np.array([reference[k] for k in keys], np.float64)
    if np.all(d == d[0]):
        low = high = float(d[0])
    else:
        for method in ("BCa", "percentile"):
            ci = stats.bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                                 method=method, random_state=np.random.default_rng(seed)).confidence_interval
            if np.isfinite(ci.low) and np.isfinite(ci.high):
                break
        low, high = float(ci.low), float(ci.high)
    p = float(stats.wilcoxon(d, alternative="greater").pvalue) if np.any(d != 0) else 1.0
    return {"n_latents": len(keys), "mean": float(a.mean()), "mean_reference": float(a.mean() - d.mean()),
            "difference": float(d.mean()), "ci_low": low, "ci_high": high, "confidence": confidence,
            "p_one_sided": p, "above": None if len(keys) < MIN_VERDICT_LATENTS else bool(low > 0 and p < 0.05),
            "n_resamples": n_resamples}


PER_LATENT = {"classification": classification, "simulation": simulation, "choice": choice}
POOLED = {"classification": classification_pooled, "simulation": simulation_pooled, "choice": choice_pooled}
