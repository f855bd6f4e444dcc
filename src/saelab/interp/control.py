"""The random-model control: a run's scores beside the same scores of a dictionary trained on a random model.

Heap et al. (2025, arXiv 2501.17727) found that explanations of latents of SAEs trained on a randomly
initialised transformer score nearly as well as a trained one's under the usual auto-interp metrics. A
detection AUC of 0.71 says how well explanations predict where latents fire; whether they describe something
the model *learned* shows only beside what a model that learned nothing gets: the same interp run made on a
dictionary of `random:MODEL` (`saelab train --random-init`).

`compare_runs(real, control)` reads both runs' per-latent scores (per_latent.json) and gives, per scorer and
explanation set (the explainer's, the top-tokens baseline, the shuffled one = chance), the mean per-latent
score of each run and the gap with a bootstrap CI. The resample is two-sample: each run's latents are drawn
independently (10,000 draws, seeded), because latent 12 of one dictionary is not latent 12 of the other; a
paired design would need latents that correspond one to one, and two dictionaries trained on different models
have none. A one-sided Mann–Whitney p (real higher than the control) is given beside it. Latents with no
score (a failed explanation, every answer failed) are counted on both sides.

The comparison is written into the real run: control.json, a section of summary.md, `control` in
summary.json and run_config.json.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .._io import read_json, write_json, write_text
from ..errors import ArtifactError, ConfigError
from ..workspace import Workspace, is_name
from .explainers.top_tokens import TOP_TOKENS
from .metrics import MIN_VERDICT_LATENTS
from .registry import scorer_class
from .summary import comparison_metric

log = logging.getLogger(__name__)

N_RESAMPLES = 10_000
"""Bootstrap draws of the gap's CI."""
CONTROL_NAME = "control.json"
SECTION = "## Against the random-model control"
"""The heading of the control's section of summary.md (the section is last; a new comparison replaces it)."""
VARIANTS = ("explanation", TOP_TOKENS.variant, "shuffled")
MAY_DIFFER = ("latents", "max_latents", "batch_size", "timeout_s", "max_retries", "retry_backoff_s", "base_url",
              "api_key_env", "dtype")
"""Settings that say which latents a run covered or how its requests were spread, not how it measured."""
METRIC_NAMES = {"auc": "AUC", "balanced_accuracy": "balanced accuracy", "pearson_r": "Pearson r"}
DESIGN = ("two-sample bootstrap: each run's latents resampled independently (the latents of two dictionaries do "
          "not correspond one to one, so they cannot be paired)")


def find_control(workspace: Workspace | None, run: str | Path, arg: str = "control") -> Path:
    """The finished interp run `run` names: a name under `workspace/interp/`, else a directory. Raises
    ArtifactError naming `arg` when there is none, or it is unfinished."""
    candidates = ([workspace.interp(str(run))] if workspace is not None and is_name(str(run)) else []) + [Path(run)]
    found = next((c for c in candidates if (c / "run_config.json").is_file()), None)
    if found is None:
        where = " or ".join(str(c) for c in candidates)
        raise ArtifactError(f"{arg}: got {str(run)!r}, but there is no interp run at {where} (no run_config.json); "
                            "give the --name of an `saelab autointerp` run in this workspace, or its directory.")
    summary = read_json(found / "summary.json") if (found / "summary.json").is_file() else None
    if summary is None or summary.get("partial") or not (found / "per_latent.json").is_file():
        raise ArtifactError(f"{arg}: {found} is unfinished (no summary, or a partial one); rerun its "
                            "`saelab autointerp` command to finish it, then compare.")
    return found


def run_model(run: Path) -> str | None:
    """The subject model a run's latent store was cached from (its recorded path; `random:PATH@SEED` for a
    random model), else None."""
    cfg = read_json(run / "run_config.json")
    if cfg.get("model"):
        return str(cfg["model"])
    store = Path(cfg["store"]) / "cfg.json" if cfg.get("store") else None
    model = read_json(store).get("model") if store is not None and store.is_file() else None
    return str(model["path"]) if isinstance(model, dict) and model.get("path") else None


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in config.items() if k != "examples"},
            **{f"examples.{k}": v for k, v in (config.get("examples") or {}).items()}}


def setting_differences(real: dict[str, Any], control: dict[str, Any], arg: str = "control") -> list[str]:
    """The measurement settings in which two runs' configs (run_config.json's `config`) differ, as
    `name: real vs control`. Raises ConfigError naming `arg` when their scorers do not overlap (nothing to
    compare)."""
    if not set(real.get("scorers") or ()) & set(control.get("scorers") or ()):
        raise ConfigError(f"{arg}: the control run was scored with {', '.join(control.get('scorers') or ()) or 'no'} "
                          f"scorers and this run with {', '.join(real.get('scorers') or ())}: none in common, so "
                          "nothing can be compared; make the control run with the same --scorers.")
    a, b = _flat(real), _flat(control)
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in MAY_DIFFER and a.get(k) != b.get(k)]


def two_sample_gap(real: np.ndarray, control: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0,
                   confidence: float = 0.95) -> dict[str, Any]:
    """mean(real) − mean(control) (`difference`; the means are `mean` and `mean_reference`) with a percentile CI
    from `n_resamples` two-sample bootstrap draws (each sample resampled with replacement, independently), and
    the one-sided Mann–Whitney p of "real higher".

    Args:
        real: per-latent scores of one run, shape (n_real,).
        control: per-latent scores of the other, shape (n_control,); both need ≥ 1 value.
    """
    from scipy import stats

    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // max(real.size, control.size))  # (chunk, n) index blocks of ≤ 32 MB
    gaps = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        n = min(chunk, n_resamples - start)
        gaps[start:start + n] = (real[rng.integers(0, real.size, (n, real.size))].mean(1)
                                 - control[rng.integers(0, control.size, (n, control.size))].mean(1))
    tail = (1 - confidence) / 2
    low, high = np.quantile(gaps, [tail, 1 - tail])
    differ = real.size > 1 and control.size > 1 and not np.all(np.concatenate([real, control]) == real[0])
    p = float(stats.mannwhitneyu(real, control, alternative="greater").pvalue) if differ else 1.0
    return {"mean": float(real.mean()), "mean_reference": float(control.mean()),
            "difference": float(real.mean() - control.mean()), "ci_low": float(low), "ci_high": float(high),
            "confidence": confidence, "p_one_sided": p, "n_resamples": n_resamples}


def _values(per: dict[str, dict[str, Any]], metric: str) -> np.ndarray:
    return np.array([m[metric] for _, m in sorted(per.items(), key=lambda kv: int(kv[0]))
                     if m.get(metric) is not None], np.float64)


def _pairs(scorer: str, real: dict[str, Any], control: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, real variant, control variant) compared for one scorer: each explanation set both runs scored;
    for a scorer shown no explanation (intruder) its one variant, whichever name each run stored it under."""
    if not scorer_class(scorer).uses_explanation:
        return [("none shown", next(iter(real)), next(iter(control)))] if real and control else []
    return [(v, v, v) for v in VARIANTS if v in real and v in control]


def compare_scores(real: dict[str, Any], control: dict[str, Any], n_latents: tuple[int, int], seed: int = 0,
                   n_resamples: int = N_RESAMPLES) -> dict[str, list[dict[str, Any]]]:
    """{scorer: rows}, one row per explanation set both per-latent tables hold ({scorer: {variant: {latent:
    metrics}}}, per_latent.json's layout), in the words of the run's own comparisons (`metrics.compare`; the
    reference is the control): the per-latent metric (AUC where every latent of both runs has one, else
    balanced accuracy; Pearson r for simulation; accuracy for intruder), `two_sample_gap` of it, latents scored
    (`n_latents`, `n_latents_reference`) and unscored (of `n_latents` = the latents each run explained) and
    failed answers on each side, and `above`: True when the CI's lower end is above 0 and p < 0.05, None with
    fewer than MIN_VERDICT_LATENTS latents on a side or for the shuffled set (chance on both sides)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for scorer in (s for s in real if s in control):
        rows = out.setdefault(scorer, [])
        kind = scorer_class(scorer).metric_kind
        for label, rv, cv in _pairs(scorer, real[scorer], control[scorer]):
            per_r, per_c = real[scorer][rv], control[scorer][cv]
            metric = comparison_metric(kind, {**{f"r{k}": m for k, m in per_r.items()},
                                              **{f"c{k}": m for k, m in per_c.items()}})
            a, b = _values(per_r, metric), _values(per_c, metric)
            row = {"scorer": scorer, "variant": label, "reference": "control", "kind": kind, "metric": metric,
                   "n_latents": int(a.size), "n_latents_reference": int(b.size),
                   "unscored": n_latents[0] - int(a.size), "unscored_reference": n_latents[1] - int(b.size),
                   "failed_answers": sum(int(m.get("n_failed", 0)) for m in per_r.values()),
                   "failed_answers_reference": sum(int(m.get("n_failed", 0)) for m in per_c.values())}
            if a.size and b.size:
                row |= two_sample_gap(a, b, n_resamples, seed)
                enough = min(a.size, b.size) >= MIN_VERDICT_LATENTS and label != "shuffled"
                row["above"] = bool(row["ci_low"] > 0 and row["p_one_sided"] < 0.05) if enough else None
            rows.append({**row, "sentence": sentence(row)})
    return {s: rows for s, rows in out.items() if rows}


def sentence(row: dict[str, Any]) -> str:
    """The row in words: 'Detection AUC 0.712 vs 0.694 on the random-model control: gap +0.018, 95% CI [-0.011,
    +0.047]: these explanations do not separate the trained model from a random one.'"""
    what = {"explanation": "these explanations", TOP_TOKENS.variant: "these top-token descriptions",
            "shuffled": "shuffled explanations", "none shown": "these latents"}[row["variant"]]
    head = f"{row['scorer'].capitalize()} {METRIC_NAMES.get(row['metric'], row['metric'])}" + (
        "" if row["variant"] == "explanation" else f" ({row['variant']})")
    if "difference" not in row:
        side = "this run" if not row["n_latents"] else "the control"
        return f"{head}: no latent scored on {side}, nothing to compare."
    nums = (f"{head} {row['mean']:.3f} vs {row['mean_reference']:.3f} on the random-model control: gap "
            f"{row['difference']:+.3f}, {row['confidence']:.0%} CI [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]")
    if row["variant"] == "shuffled":
        return f"{nums}: chance on both sides, for reference."
    if row["above"] is None:
        return (f"{nums}: too few latents for a verdict ({row['n_latents']} and {row['n_latents_reference']}; "
                f"{MIN_VERDICT_LATENTS} needed on each side).")
    if row["above"]:
        return (f"{nums}: {what} separate the trained model from a random one: they measure something the trained "
                "model learned.")
    if row["ci_high"] < 0:
        return f"{nums}: the random model's dictionary scores higher; {what} do not measure something it learned."
    return f"{nums}: {what} do not separate the trained model from a random one."


def _side(run: Path) -> dict[str, Any]:
    s = read_json(run / "summary.json")
    return {"run": str(run.resolve()), "model": run_model(run), "n_latents": int(s["n_latents"]),
            "n_skipped": len(s.get("skipped") or {}), "explainer": s.get("explainer"),
            "explanation_failures": {k: f["n_failed"] for k, f in (s.get("explanation_failures") or {}).items()}}


def compare_runs(real: str | Path, control: str | Path, seed: int = 0, n_resamples: int = N_RESAMPLES,
                 arg: str = "control") -> dict[str, Any]:
    """Compare the finished interp run `real` with `control` (made on a random model's dictionary): the rows of
    `compare_scores`, the settings that differ, both runs' models, latents and failures. Raises ConfigError
    naming `arg` when the two are one run or share no scorer.

    Example:
        >>> c = compare_runs("ws/interp/sae", "ws-random/interp/sae")
        >>> c["comparisons"]["detection"][0]["sentence"]
        'Detection AUC 0.712 vs 0.694 on the random-model control: gap +0.018, ...'
    """
    real, control = find_control(None, real, "run"), find_control(None, control, arg)
    if real.resolve() == control.resolve():
        raise ConfigError(f"{arg}: {control} is the run being compared; give the run made on the random model.")
    cfg_r, cfg_c = (read_json(p / "run_config.json") for p in (real, control))
    differences = setting_differences(cfg_r.get("config") or {}, cfg_c.get("config") or {}, arg)
    if cfg_r.get("hookpoint") != cfg_c.get("hookpoint"):
        differences.append(f"hookpoint: {cfg_r.get('hookpoint')!r} vs {cfg_c.get('hookpoint')!r}")
    sides = {"real": _side(real), "control": _side(control)}
    warnings = [f"the runs were made with other settings ({d})" for d in differences]
    if not str(sides["control"]["model"] or "").startswith("random:"):
        warnings.append(f"the control's latent store was not cached from a random: model (it names "
                        f"{sides['control']['model']!r}); compared anyway")
    if str(sides["real"]["model"] or "").startswith("random:"):
        warnings.append(f"this run's own model is a random one ({sides['real']['model']}): the two may be swapped")
    per_r, per_c = (read_json(p / "per_latent.json") for p in (real, control))
    comparisons = compare_scores(per_r, per_c, (sides["real"]["n_latents"], sides["control"]["n_latents"]), seed,
                          n_resamples)
    for w in warnings:
        log.warning("control %s: %s", control, w)
    return {"control": sides["control"]["run"], "control_model": sides["control"]["model"],
            "model": sides["real"]["model"], "design": DESIGN, "n_resamples": n_resamples, "seed": seed,
            "differences": differences, "warnings": warnings, "scorers_only_here": sorted(set(per_r) - set(per_c)),
            "scorers_only_control": sorted(set(per_c) - set(per_r)),
            "sides": sides, "comparisons": comparisons}


def markdown(c: dict[str, Any]) -> list[str]:
    """The control's section of summary.md."""
    r, k = c["sides"]["real"], c["sides"]["control"]
    lines = ["", SECTION, "",
             f"Control: `{c['control']}`, a run on a dictionary of `{c['control_model']}` (this run: "
             f"`{c['model']}`). Explanations of a random model's latents score nearly as well as a trained one's "
             "under the usual metrics (Heap et al. 2025, arXiv 2501.17727); the gap says what the trained model "
             f"adds. Mean per-latent score of each run; CI: {c['design']}, {c['n_resamples']:,} draws; one-sided "
             "Mann–Whitney p. Unscored: latents explained but without a score (explanation or answers failed).", "",
             f"- this run: {r['n_latents']} latents ({r['n_skipped']} skipped), failed explanations "
             f"{r['explanation_failures']}",
             f"- control: {k['n_latents']} latents ({k['n_skipped']} skipped), failed explanations "
             f"{k['explanation_failures']}"]
    lines += [f"- **{w}**" for w in c["warnings"]]
    lines += [f"- scorer only in {side}: {', '.join(names)}" for side, names in
              (("this run", c["scorers_only_here"]), ("the control", c["scorers_only_control"])) if names]
    rows = [row for rows in c["comparisons"].values() for row in rows]
    lines += [""] + [f"- {row['sentence']}" for row in rows if row["variant"] != "shuffled"]
    lines += ["", "| scorer | explanations | metric | latents (unscored) | control latents (unscored) | "
              "failed answers | this run | control | gap | 95% CI | p | separates |", "|---" * 12 + "|"]
    for row in rows:
        nums = ("– | – | – | – | –" if "difference" not in row else
                f"{row['mean']:.3f} | {row['mean_reference']:.3f} | {row['difference']:+.3f} | "
                f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}] | {row['p_one_sided']:.3g}")
        verdict = {None: "–", True: "**yes**", False: "no"}[row.get("above")]
        lines.append(f"| {row['scorer']} | {row['variant']} | {row['metric']} | {row['n_latents']} "
                     f"({row['unscored']}) | {row['n_latents_reference']} ({row['unscored_reference']}) | "
                     f"{row['failed_answers']} / {row['failed_answers_reference']} | {nums} | {verdict} |")
    return lines


def write_control(run: Path, comparison: dict[str, Any]) -> None:
    """Write `comparison` into the run: control.json, `control` in summary.json and run_config.json (the
    control run's path and model), and the last section of summary.md (replacing an earlier one)."""
    write_json(run / CONTROL_NAME, comparison)
    summary = read_json(run / "summary.json")
    write_json(run / "summary.json", {**summary, "control": comparison})
    cfg = read_json(run / "run_config.json")
    write_json(run / "run_config.json", {**cfg, "control": {"run": comparison["control"],
                                                            "model": comparison["control_model"]}})
    text = (run / "summary.md").read_text(encoding="utf-8")
    text = text.split("\n" + SECTION + "\n", 1)[0].rstrip("\n") + "\n"
    write_text(run / "summary.md", text + "\n".join(markdown(comparison)) + "\n")
