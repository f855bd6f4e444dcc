"""Verdict of a pre-registered auto-interp test with more than one scorer in the family.

    python bench/interp_verdict.py RUN_DIR --scorers detection --scorers fuzz [--alpha 0.05]

Run it with saelab's own `.venv/bin/python` (it imports saelab); it needs no peer environment.

Reads RUN_DIR/per_latent.json and summary.json (written by every `saelab autointerp` summary) and, for each named
scorer,
compares the per-latent key score of the LLM explanations with the shuffled baseline on the same latents
(`saelab.interp.metrics.compare`, the summary's own test), Bonferroni-corrected over the scorers named:
each at one-sided Wilcoxon p < alpha / m with a (1 - alpha / m) paired-bootstrap CI whose lower end is
above 0. The family passes if any scorer does; the family-wise false-positive rate stays at most alpha.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from saelab.interp.metrics import compare
from saelab.interp.summary import comparison_metric


def verdict(per_latent: dict, kinds: dict, scorers: list[str], alpha: float, seed: int) -> dict:
    """`per_latent`: per_latent.json; `kinds`: {scorer: metric kind} from summary.json."""
    m = len(scorers)
    rows = []
    for scorer in scorers:
        if scorer not in per_latent or not {"explanation", "shuffled"} <= set(per_latent[scorer]):
            raise SystemExit(f"--scorers: {scorer!r} has no explanation and shuffled scores in this run; "
                             f"it has {sorted(per_latent)}")
        per, ref = per_latent[scorer]["explanation"], per_latent[scorer]["shuffled"]
        metric = comparison_metric(kinds[scorer], per)  # the metric the summary's own comparison uses
        c = compare({l: v.get(metric) for l, v in per.items()}, {l: v.get(metric) for l, v in ref.items()},
                    seed=seed, confidence=1 - alpha / m)
        if c is None:
            raise SystemExit(f"{scorer}: fewer than 3 latents scored with both sets")
        c["passes"] = bool(c["ci_low"] > 0 and c["p_one_sided"] < alpha / m)
        rows.append({"scorer": scorer, **c})
    return {"alpha": alpha, "m": m, "per_scorer_alpha": alpha / m, "rows": rows,
            "passes": any(r["passes"] for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--scorers", action="append", required=True)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=22, help="bootstrap seed (the run's --seed)")
    args = ap.parse_args()
    paths = [args.run_dir / "per_latent.json", args.run_dir / "summary.json"]
    for path in paths:
        if not path.exists():
            raise SystemExit(f"run_dir: {path} does not exist (run `saelab autointerp` to the summary first)")
    per_latent, summary = (json.loads(p.read_text()) for p in paths)
    kinds = {s: next(iter(v.values()))["kind"] for s, v in summary["scores"].items()}
    v = verdict(per_latent, kinds, args.scorers, args.alpha, args.seed)
    conf = 100 * (1 - v["per_scorer_alpha"])
    print(f"Bonferroni over {v['m']} scorers: each at one-sided p < {v['per_scorer_alpha']:.4f}, "
          f"{conf:.2f}% CI lower end > 0")
    print("| scorer | latents | explanation | shuffled | difference | CI | p | passes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in v["rows"]:
        print(f"| {r['scorer']} | {r['n_latents']} | {r['mean']:.3f} | {r['mean_reference']:.3f} | "
              f"{r['difference']:+.3f} | [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] | {r['p_one_sided']:.3g} | "
              f"{'yes' if r['passes'] else 'no'} |")
    print(f"verdict: {'PASS' if v['passes'] else 'FAIL'}")


if __name__ == "__main__":
    main()
