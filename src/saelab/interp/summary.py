"""summary.json + summary.md of an interp run: pooled metrics of every scorer for the
explanations and both reference points (top-tokens, shuffled = measured chance), failures
counted, skipped latents listed, and the best / worst explained latents. Simulation is summarised
by Pearson r, intruder (which shows no explanation) by accuracy against chance 1/N."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from .._io import read_json, write_json, write_text
from .explainers.top_tokens import TOP_TOKENS
from .metrics import MIN_VERDICT_LATENTS, PER_LATENT, POOLED, compare
from .registry import scorer_class

COLUMNS = ("precision", "recall", "f1", "balanced_accuracy", "auc", "mean_latent_auc")
SIM_COLUMNS = ("mean_latent_r", "median_latent_r", "pooled_r", "mean_example_r")
CHOICE_COLUMNS = ("accuracy", "chance", "mean_latent_accuracy", "mean_probability")


def _records(out: Path, scorer: str, variant: str, latents: list[int]) -> dict[int, list[dict[str, Any]]]:
    found = {}
    for latent in latents:
        path = out / "scores" / scorer / variant / f"{latent}.json"
        if path.exists():
            found[latent] = read_json(path)["records"]
    return found


def key_metric(m: dict[str, Any]) -> float:
    """AUC, else balanced accuracy (classifiers); Pearson r (simulation); accuracy (intruder)."""
    for key in ("auc", "balanced_accuracy", "pearson_r", "accuracy"):
        if m.get(key) is not None:
            return float(m[key])
    return -1.0


def score_table(out: Path, config: Any, latents: list[int], texts: dict[str, dict[int, str]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for scorer in config.scorers:
        cls = scorer_class(scorer)
        table[scorer] = {}
        for variant in texts if cls.uses_explanation else list(texts)[:1]:
            per = _records(out, scorer, variant, latents)
            reasons = Counter(r["reason"] for rs in per.values() for r in rs if r["failed"])
            kind = cls.metric_kind
            table[scorer][variant] = {"n_latents": len(per), "kind": kind, "pooled": POOLED[kind](per),
                                      "failure_reasons": dict(reasons),
                                      "per_latent": {str(l): PER_LATENT[kind](rs) for l, rs in per.items()}}
    return table


PAIRS = (("explanation", "shuffled"), (TOP_TOKENS.variant, "shuffled"), ("explanation", TOP_TOKENS.variant))
"""(variant, reference) pairs compared latent by latent: each against chance, and the LLM against the baseline."""


def comparison_metric(kind: str, per_latent: dict[str, dict[str, Any]]) -> str:
    """The per-latent score two explanation sets are compared on: AUC where every latent has one, else
    balanced accuracy; Pearson r for simulation; accuracy for intruder."""
    return ("pearson_r" if kind == "simulation" else "accuracy" if kind == "choice"
            else "auc" if all(m.get("auc") is not None for m in per_latent.values()) else "balanced_accuracy")


def comparisons(table: dict[str, Any], seed: int) -> dict[str, list[dict[str, Any]]]:
    """Per scorer, each pair of PAIRS that was scored: `metrics.compare` of the per-latent key score (AUC where
    every latent has one, else balanced accuracy; Pearson r for simulation)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for scorer, variants in table.items():
        rows = []
        for variant, reference in PAIRS:
            if variant not in variants or reference not in variants:
                continue
            per, ref = variants[variant]["per_latent"], variants[reference]["per_latent"]
            metric = comparison_metric(variants[variant]["kind"], per)
            c = compare({l: m.get(metric) for l, m in per.items()}, {l: m.get(metric) for l, m in ref.items()},
                        seed=seed)
            if c is not None:
                rows.append({"variant": variant, "reference": reference, "metric": metric, **c})
        if rows:
            out[scorer] = rows
    return out


def best_worst(table: dict[str, Any], config: Any, texts: dict[str, dict[int, str]], n: int = 5) -> dict[str, Any]:
    scorer = next((s for s in config.scorers if scorer_class(s).uses_explanation), config.scorers[0])
    variant = next(iter(texts))
    per = table[scorer][variant]["per_latent"]
    ranked = sorted(per, key=lambda l: (-key_metric(per[l]), int(l)))
    row = lambda l: {"latent": int(l), "explanation": texts[variant].get(int(l)), "score": key_metric(per[l])}  # noqa: E731
    metric = {"classification": "auc (balanced accuracy where no AUC)", "simulation": "pearson r",
              "choice": "accuracy"}[table[scorer][variant]["kind"]]
    return {"scorer": scorer, "variant": variant, "metric": metric,
            "best": [row(l) for l in ranked[:n]], "worst": [row(l) for l in ranked[::-1][:n]]}


def write_summary(out: Path, config: Any, items: dict, skipped: dict[int, str], explained: dict,
                  texts: dict[str, dict[int, str]], partial: bool = False,
                  merged_from: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """`partial`: scoring was interrupted; the table holds what was scored (its `latents` column says how many).
    `merged_from`: [{run, latents}] of the runs an `autointerp-merge` pooled."""
    latents = sorted(items)
    table = score_table(out, config, latents, texts)
    explanation_failures = {name: {"n_failed": sum(e.failed for e in d.values()), "n": len(d),
                                   "reasons": dict(Counter(e.reason for e in d.values() if e.failed))}
                            for name, d in explained.items()}
    summary = {"n_latents": len(latents), "latents": latents, "partial": partial,
               "skipped": {str(k): v for k, v in skipped.items()},
               "explainer": config.explainer, "explanation_failures": explanation_failures,
               "scores": {s: {v: {k: t[k] for k in ("n_latents", "kind", "pooled", "failure_reasons")}
                              for v, t in d.items()} for s, d in table.items()},
               "comparisons": comparisons(table, config.examples.seed),
               "best_worst": best_worst(table, config, texts) if latents and texts else None,
               "timings": _timings(out)}
    if merged_from:
        summary["merged_from"] = merged_from
    write_json(out / "summary.json", summary)
    write_json(out / "per_latent.json", {s: {v: t["per_latent"] for v, t in d.items()} for s, d in table.items()})
    write_text(out / "summary.md", markdown(summary))
    return summary


TIMINGS = "timings.json"
"""Per run: {stage: {seconds, n_latents}}, summed over reruns (written by `run.add_time`)."""


def _timings(out: Path) -> dict[str, Any]:
    """timings.json (stage → seconds and latents processed, summed over reruns) with seconds per latent."""
    path = out / TIMINGS
    if not path.exists():
        return {}
    return {k: {**v, "seconds_per_latent": round(v["seconds"] / v["n_latents"], 3)}
            for k, v in read_json(path).items() if v.get("n_latents")}


def fmt(x: Any) -> str:
    """A metric for a table: 3 decimals, or – where there is none."""
    return "–" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def _table(s: dict[str, Any], kind: str, columns: tuple[str, ...]) -> list[str]:
    rows = [(scorer, variant, t) for scorer, d in s["scores"].items() for variant, t in d.items()
            if t.get("kind", "classification") == kind]
    if not rows:
        return []
    lines = ["", "| scorer | explanations | latents | examples | failed | " + " | ".join(columns) + " |",
             "|---" * (5 + len(columns)) + "|"]
    for scorer, variant, t in rows:
        p = t["pooled"]
        lines.append(f"| {scorer} | {variant if kind != 'choice' else 'none shown'} | {t['n_latents']} | "
                     f"{p['n_examples']} | {p['n_failed']} | " + " | ".join(fmt(p.get(c)) for c in columns) + " |")
    return lines


def _comparison_lines(comparisons: dict[str, list[dict[str, Any]]]) -> list[str]:
    rows = [(scorer, c) for scorer, cs in comparisons.items() for c in cs]
    if not rows:
        return []
    n = rows[0][1]["n_resamples"]
    lines = ["", "## Above chance, above the baseline?", "",
             "Latent by latent: each latent's score with one set of explanations minus the same latent's score with "
             f"the reference set, on the same examples. Mean over latents, 95% CI by a paired bootstrap over latents "
             f"({n:,} resamples), one-sided Wilcoxon signed-rank p. **Measurably above** when the CI's lower end is "
             f"above 0 and p < 0.05; no verdict (–) with fewer than {MIN_VERDICT_LATENTS} latents.", "",
             "| scorer | explanations | reference | metric | latents | mean | reference mean | difference | "
             "95% CI | p | measurably above |", "|---" * 11 + "|"]
    for scorer, c in rows:
        lines.append(f"| {scorer} | {c['variant']} | {c['reference']} | {c['metric']} | {c['n_latents']} | "
                     f"{c['mean']:.3f} | {c['mean_reference']:.3f} | {c['difference']:+.3f} | "
                     f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] | {c['p_one_sided']:.3g} | "
                     f"{'–' if c['above'] is None else '**yes**' if c['above'] else 'no'} |")
    return lines


def _spans(latents: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] → '6 latents: 0–2, 5, 7–8'."""
    parts, run = [], []
    for latent in sorted(latents):
        if run and latent != run[-1] + 1:
            parts.append(run)
            run = []
        run.append(latent)
    parts += [run] if run else []
    return f"{len(latents)} latents: " + ", ".join(f"{p[0]}–{p[-1]}" if len(p) > 1 else f"{p[0]}" for p in parts)


def markdown(s: dict[str, Any]) -> str:
    lines = [f"# Auto-interpretation: {s['n_latents']} latents, explainer `{s['explainer']}`", "",
             f"Reference points: `{TOP_TOKENS.variant}` = the no-LLM baseline explanation; `shuffled` = each latent "
             "scored with another latent's explanation (measured chance)."]
    if s.get("merged_from"):
        lines += ["", "Merged (`saelab autointerp-merge`) from runs made with the same settings; each latent's "
                  "records, and its shuffled explanation, are those of its own run:", ""]
        lines += [f"- `{m['run']}`: {_spans(m['latents'])}" for m in s["merged_from"]]
    if s.get("partial"):
        lines += ["", "**Partial:** scoring was interrupted; each row holds the latents scored so far (`latents`). "
                  "Rerun the same command to finish: finished latents are not scored again."]
    lines += _table(s, "classification", COLUMNS)
    if sim := _table(s, "simulation", SIM_COLUMNS):
        lines += ["", "Simulation: Pearson r of predicted vs true activations — `mean_latent_r` averages each "
                  "latent's r over all its tokens; `pooled_r` is one r over every token (true activations divided "
                  "by each latent's maximum); `mean_example_r` averages r per example where it is defined. "
                  "Chance is the `shuffled` row (≈ 0)."] + sim
    if choice := _table(s, "choice", CHOICE_COLUMNS):
        lines += ["", "Intruder: which of N texts with marked tokens does not belong to the latent; the explanation "
                  "is not shown, so there are no explanation variants: the reference point is chance, 1/N "
                  "(`chance`)."] + choice
    lines += _comparison_lines(s.get("comparisons") or {})
    lines += ["", "## Failures", ""]
    for name, f in s["explanation_failures"].items():
        lines.append(f"- explanations `{name}`: {f['n_failed']} of {f['n']} failed {f['reasons'] or ''}")
    for scorer, d in s["scores"].items():
        for variant, t in d.items():
            if t["failure_reasons"]:
                lines.append(f"- {scorer} / {variant}: {t['failure_reasons']}")
    if s.get("timings"):
        lines += ["", "## Time", "", "Wall time of the work done (summed over reruns; a resumed stage counts only the "
                  "latents it processed).", "",
                  "| stage | latents | seconds | seconds per latent |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['n_latents']} | {v['seconds']:.1f} | {v['seconds_per_latent']:.2f} |"
                  for k, v in s["timings"].items()]
    lines += ["", f"## Skipped latents ({len(s['skipped'])})", ""]
    lines += [f"- {k}: {v}" for k, v in list(s["skipped"].items())[:50]]
    if s["best_worst"]:
        bw = s["best_worst"]
        for part in ("best", "worst"):
            lines += ["", f"## {part.capitalize()} explained latents ({bw['scorer']}, {bw['metric']})", ""]
            lines += [f"- {r['latent']} ({fmt(r['score'])}): {r['explanation']}" for r in bw[part]]
    return "\n".join(lines) + "\n"
