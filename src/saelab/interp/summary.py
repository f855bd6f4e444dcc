"""summary.json + summary.md of an interp run: pooled metrics of every scorer for the
explanations and both reference points (top-tokens, shuffled = measured chance), failures
counted, skipped latents listed, and the best / worst explained latents."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from .._io import read_json, write_json, write_text
from .metrics import classification

COLUMNS = ("precision", "recall", "f1", "balanced_accuracy", "auc")


def _records(out: Path, scorer: str, variant: str, latents: list[int]) -> dict[int, list[dict[str, Any]]]:
    found = {}
    for latent in latents:
        path = out / "scores" / scorer / variant / f"{latent}.json"
        if path.exists():
            found[latent] = read_json(path)["records"]
    return found


def key_metric(m: dict[str, Any]) -> float:
    value = m["auc"] if m["auc"] is not None else m["balanced_accuracy"]
    return -1.0 if value is None else float(value)


def score_table(out: Path, config: Any, latents: list[int], texts: dict[str, dict[int, str]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for scorer in config.scorers:
        table[scorer] = {}
        for variant in texts:
            per = _records(out, scorer, variant, latents)
            pooled = classification(r for rs in per.values() for r in rs)
            reasons = Counter(r["reason"] for rs in per.values() for r in rs if r["failed"])
            table[scorer][variant] = {"n_latents": len(per), "pooled": pooled, "failure_reasons": dict(reasons),
                                      "per_latent": {str(l): classification(rs) for l, rs in per.items()}}
    return table


def best_worst(table: dict[str, Any], config: Any, texts: dict[str, dict[int, str]], n: int = 5) -> dict[str, Any]:
    scorer = config.scorers[0]
    variant = next(iter(texts))
    per = table[scorer][variant]["per_latent"]
    ranked = sorted(per, key=lambda l: (-key_metric(per[l]), int(l)))
    row = lambda l: {"latent": int(l), "explanation": texts[variant].get(int(l)), "score": key_metric(per[l])}  # noqa: E731
    return {"scorer": scorer, "variant": variant, "metric": "auc (balanced accuracy where no AUC)",
            "best": [row(l) for l in ranked[:n]], "worst": [row(l) for l in ranked[::-1][:n]]}


def write_summary(out: Path, config: Any, items: dict, skipped: dict[int, str], explained: dict,
                  texts: dict[str, dict[int, str]]) -> dict[str, Any]:
    latents = sorted(items)
    table = score_table(out, config, latents, texts)
    explanation_failures = {name: {"n_failed": sum(e.failed for e in d.values()), "n": len(d),
                                   "reasons": dict(Counter(e.reason for e in d.values() if e.failed))}
                            for name, d in explained.items()}
    summary = {"n_latents": len(latents), "latents": latents,
               "skipped": {str(k): v for k, v in skipped.items()},
               "explainer": config.explainer, "explanation_failures": explanation_failures,
               "scores": {s: {v: {k: t[k] for k in ("n_latents", "pooled", "failure_reasons")}
                              for v, t in d.items()} for s, d in table.items()},
               "best_worst": best_worst(table, config, texts) if latents and texts else None}
    write_json(out / "summary.json", summary)
    write_json(out / "per_latent.json", {s: {v: t["per_latent"] for v, t in d.items()} for s, d in table.items()})
    write_text(out / "summary.md", markdown(summary))
    return summary


def _fmt(x: Any) -> str:
    return "–" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def markdown(s: dict[str, Any]) -> str:
    lines = [f"# Auto-interpretation: {s['n_latents']} latents, explainer `{s['explainer']}`", "",
             "Reference points: `top-tokens` = the no-LLM baseline explanation; `shuffled` = each latent scored "
             "with another latent's explanation (measured chance).", "",
             "| scorer | explanations | latents | examples | failed | " + " | ".join(COLUMNS) + " |",
             "|---" * (5 + len(COLUMNS)) + "|"]
    for scorer, d in s["scores"].items():
        for variant, t in d.items():
            p = t["pooled"]
            lines.append(f"| {scorer} | {variant} | {t['n_latents']} | {p['n_examples']} | {p['n_failed']} | "
                         + " | ".join(_fmt(p[c]) for c in COLUMNS) + " |")
    lines += ["", "## Failures", ""]
    for name, f in s["explanation_failures"].items():
        lines.append(f"- explanations `{name}`: {f['n_failed']} of {f['n']} failed {f['reasons'] or ''}")
    for scorer, d in s["scores"].items():
        for variant, t in d.items():
            if t["failure_reasons"]:
                lines.append(f"- {scorer} / {variant}: {t['failure_reasons']}")
    lines += ["", f"## Skipped latents ({len(s['skipped'])})", ""]
    lines += [f"- {k}: {v}" for k, v in list(s["skipped"].items())[:50]]
    if s["best_worst"]:
        bw = s["best_worst"]
        for part in ("best", "worst"):
            lines += ["", f"## {part.capitalize()} explained latents ({bw['scorer']}, {bw['metric']})", ""]
            lines += [f"- {r['latent']} ({_fmt(r['score'])}): {r['explanation']}" for r in bw[part]]
    return "\n".join(lines) + "\n"
