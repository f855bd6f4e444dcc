"""Each headline number beside its reference point, and one sentence where it is *at* its reference (issue #26).

The rule for "at its reference", per number (the one place it is written; the functions below apply it):

- FVU of a dictionary; reference: dense PCA with K = the dictionary's L0 on the same tokens. At its reference
  when FVU ≥ (1 − FVU_MARGIN) × PCA's FVU, i.e. not at least 5% below it (FVU over ~30K tokens has a sampling
  error far below 5%: the margin is about meaning, not noise).
- Per-latent AUC (balanced accuracy where there is none) of an explanation set; references: shuffled
  explanations (measured chance), the top-token descriptions, the random-model control where it ran. At its
  reference when `beats` is False: fewer than interp's MIN_VERDICT_LATENTS paired latents, a difference ≤ 0,
  a 95% CI of the paired per-latent difference (interp's bootstrap) that includes 0, or interp's own verdict
  (`above`, which adds a signed-rank test) False.
- One-to-one matching recall of the narrow dictionary at the match threshold; reference: the random baseline's
  recall at the same threshold. At its reference when recall − baseline ≤ RECALL_MARGIN (one point).
- SFAL mean NDCG; reference: shuffled explanations. At its reference when mean ≤ baseline mean + NDCG_SDS × the
  s.d. of the baseline's mean over shuffles.
- Share of a Δnorm tail (the 20 most target- or base-leaning latents) that fires most on its favourite
  category; reference: that category's share among all eligible latents (the all-latent rate). At its
  reference when the Bonferroni-corrected one-sided binomial p ≥ ALPHA.

A `Reference` holds the sentence with the number and its reference, and, where the number is at its reference,
the sentence that says so; `at_reference` is None where there was no reference to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FVU_MARGIN = 0.05
RECALL_MARGIN = 0.01
NDCG_SDS = 2.0
ALPHA = 0.05


@dataclass(frozen=True)
class Reference:
    """One headline number beside its reference point."""

    stage: str
    """The stage the number comes from: evals, interp, match, sfal, diff."""
    subjects: tuple[str, ...]
    """The dictionaries (or diff runs) it is about: the pages that show it."""
    text: str
    """The number beside its reference, as one sentence."""
    at_reference: bool | None
    """True where the number is at its reference (the rule above); None where there is no reference."""
    verdict: str | None = None
    """The sentence that says the number is at its reference (None where it is not)."""

    @property
    def line(self) -> str:
        return self.text + (f" {self.verdict}" if self.verdict else "")


# --- the rules -------------------------------------------------------------------------------------------


def fvu_at_reference(fvu: float, pca_fvu: float) -> bool:
    """FVU no more than FVU_MARGIN (relative) below PCA's at the same L0."""
    return fvu >= (1.0 - FVU_MARGIN) * pca_fvu


def beats(c: dict[str, Any] | None) -> bool:
    """Whether an interp comparison (`interp.summary.comparisons` row, or `interp.control`'s) shows the variant
    above its reference: interp's own verdict `above`, True only with enough latents for a verdict, a 95% CI
    of the difference above 0 and a one-sided p < 0.05 (None, no verdict, counts as not above)."""
    return c is not None and c.get("above") is True


def _n(c: dict[str, Any]) -> int:
    """Latents behind a comparison: the fewer side's where the two sides are separate samples (the control)."""
    return min(c["n_latents"], c.get("n_latents_reference", c["n_latents"]))


def recall_at_reference(recall: float, baseline: float) -> bool:
    return recall - baseline <= RECALL_MARGIN


def ndcg_at_reference(mean: float, baseline: float, baseline_sd: float) -> bool:
    return mean <= baseline + NDCG_SDS * baseline_sd


def tail_at_reference(p: float) -> bool:
    return p >= ALPHA


# --- interp: explanation sets against shuffled, top tokens and the control ------------------------------------


def comparison(summary: dict[str, Any] | None, scorer: str, variant: str, reference: str) -> dict[str, Any] | None:
    """The summary's comparison row of `variant` against `reference` on `scorer` (None when it has none)."""
    rows = ((summary or {}).get("comparisons") or {}).get(scorer, [])
    return next((c for c in rows if (c["variant"], c["reference"]) == (variant, reference)), None)


def explanation_scorers(summary: dict[str, Any] | None, variant: str) -> list[str]:
    """The scorers that scored `variant` (an explanation set) and shuffled."""
    return [s for s, by in ((summary or {}).get("scores") or {}).items() if variant in by and "shuffled" in by]


def set_beats_shuffled(summary: dict[str, Any] | None, variant: str = "explanation") -> bool:
    """Whether an explanation set beats shuffled on its run's own scores: on EVERY scorer that scored it
    against shuffled (a headline must hold whichever scorer reads it); False where none did."""
    scorers = explanation_scorers(summary, variant)
    return bool(scorers) and all(beats(comparison(summary, s, variant, "shuffled")) for s in scorers)


def gap(c: dict[str, Any]) -> str:
    n = f"{c['n_latents']}" + (f" and {c['n_latents_reference']}" if "n_latents_reference" in c else "")
    return f"{c['difference']:+.3f} (95% CI {c['ci_low']:+.3f} … {c['ci_high']:+.3f}, {n} latents)"


def why_not_above(c: dict[str, Any] | None, reference: str) -> str:
    """Why a comparison does not show the set above `reference` (`beats` is False), as a clause."""
    from ..interp.metrics import MIN_VERDICT_LATENTS

    if c is None:
        return f"it was not compared with {reference} (fewer than 3 latents scored with both)"
    said = f"the difference from {reference} is {gap(c)}"
    if c["difference"] <= 0:
        said += ", not above 0"
    elif c["ci_low"] <= 0:
        said += ": its CI includes 0"
    elif c.get("above") is False:
        said += f", but it fails the signed-rank test (p = {c['p_one_sided']:.2g})"
    if _n(c) < MIN_VERDICT_LATENTS:
        said += f"; {_n(c)} latents are too few for a verdict (it needs {MIN_VERDICT_LATENTS})"
    return said


def _what(variant: str, explainer: str | None) -> str:
    from ..interp import TOP_TOKENS

    return "top-token descriptions (no LLM)" if variant == TOP_TOKENS.variant else f"explanations by {explainer}"


def interp_references(name: str, summary: dict[str, Any], explainer: str | None,
                      control: dict[str, Any] | None = None, label: str | None = None) -> list[Reference]:
    """One reference per scorer of an interp run's own explanation set (the LLM's, else the top-token
    descriptions): its mean per-latent score beside shuffled (chance), the top-token descriptions, and the
    random-model control's when it ran (`control`: scorer → explanation set → a row of real − control, as
    `sources.interp_control` reads it). `label`
    names the run in the sentences (default: the dictionary's name).

    Example:
        >>> interp_references("full", read_json(run / "summary.json"), "smollm2-135m")[0].line
        'full, detection: explanations by smollm2-135m … mean per-latent AUC 0.545 vs 0.533 shuffled (chance) …'
    """
    from ..interp import TOP_TOKENS

    variant = "explanation" if "explanation" in {v for by in (summary.get("scores") or {}).values() for v in by} \
        else TOP_TOKENS.variant
    label = label or name
    out = []
    for scorer in explanation_scorers(summary, variant):
        shuffled = comparison(summary, scorer, variant, "shuffled")
        if shuffled is None:
            out.append(Reference("interp", (name,), f"{label}, {scorer}: {_what(variant, explainer)} of "
                                 f"{summary['n_latents']} latents, too few scored to compare with shuffled.", None))
            continue
        metric = "AUC" if shuffled["metric"] == "auc" else shuffled["metric"].replace("_", " ")
        parts = [f"{shuffled['mean_reference']:.3f} shuffled (chance)"]
        if variant != TOP_TOKENS.variant and (top := comparison(summary, scorer, variant, TOP_TOKENS.variant)):
            parts.append(f"{top['mean_reference']:.3f} top-token descriptions")
        # CONTROL: the random-model control (`saelab autointerp --control RUN`, saelab.interp.control) shows here.
        ctrl = ((control or {}).get(scorer) or {}).get(variant)
        parts.append(f"{ctrl['mean_reference']:.3f} for the random-model control" if ctrl
                     else "random-model control not run")
        text = (f"{label}, {scorer}: {_what(variant, explainer)} of {shuffled['n_latents']} latents, mean per-latent "
                f"{metric} {shuffled['mean']:.3f} vs " + ", ".join(parts) + ".")
        verdicts = []
        if not beats(shuffled):
            verdicts.append(f"At chance: {why_not_above(shuffled, 'shuffled')}.")
        if ctrl and not beats(ctrl):
            verdicts.append(f"At the random-model control: {why_not_above(ctrl, 'the control')}.")
        if verdicts:
            out.append(Reference("interp", (name,), text, True, " ".join(verdicts)))
        else:
            out.append(Reference("interp", (name,), text + f" Above chance by {gap(shuffled)}.", False))
    return out


def failure_sentences(summary: dict[str, Any]) -> list[str]:
    """The failures an interp run counted (explanations, then scored examples), one sentence per set with any:
    a failure is data, said beside the scores it leaves out."""
    out = [f"explanations {e}: {f['n_failed']} of {f['n']} failed {f['reasons']}"
           for e, f in (summary.get("explanation_failures") or {}).items() if f["n_failed"]]
    for scorer, variants in (summary.get("scores") or {}).items():
        out += [f"{scorer} / {v}: {t['pooled']['n_examples']} examples scored, {t['pooled']['n_failed']} failed "
                f"({t['n_latents']} latents)" for v, t in variants.items()
                if t["pooled"].get("n_failed") or not t["pooled"].get("n_examples")]
    return out


def chance_sentence(summary: dict[str, Any] | None, explainer: str) -> str:
    """Why an explanation set is not a latent's headline: the first scorer on which it does not beat shuffled."""
    for scorer in explanation_scorers(summary, "explanation"):
        c = comparison(summary, scorer, "explanation", "shuffled")
        if not beats(c):
            return (f"The {explainer} explanations of this run do not beat shuffled explanations on the run's own "
                    f"{scorer} scores: {why_not_above(c, 'shuffled')}.")
    return f"The {explainer} explanations of this run were not scored against shuffled explanations."


# --- the other stages ------------------------------------------------------------------------------------------


def fvu_reference(name: str, m: dict[str, Any], pca: dict[str, Any] | None) -> Reference:
    """FVU of `name` (its metrics.json) beside dense PCA at the same L0 on the same tokens (`pca`: its metrics)."""
    fvu, n = m["reconstruction"]["fvu"], m["reconstruction"].get("n_tokens", 0)
    if pca is None:
        return Reference("evals", (name,), f"FVU of {name} {fvu:.3f} on {n:,} held-out tokens; no dense PCA "
                         f"baseline at its L0 on those tokens to compare with (`saelab compare --a {name} --b "
                         "dense:pca`).", None)
    p, k = pca["reconstruction"]["fvu"], pca["dictionary"].get("k")
    text = (f"FVU of {name} {fvu:.3f} vs {p:.3f} for PCA with {k} directions (dense, the same L0) on the same "
            f"{n:,} held-out tokens.")
    if fvu_at_reference(fvu, p):
        return Reference("evals", (name,), text, True, f"At its reference: {name} reconstructs no better than PCA "
                         f"with as many dimensions (not {FVU_MARGIN:.0%} below its FVU).")
    return Reference("evals", (name,), text, False)


def match_reference(cfg: dict[str, Any]) -> Reference | None:
    """One-to-one recall of the narrow dictionary at the match threshold beside the random baseline's recall
    at the same threshold (match/A__B/cfg.json); None for a match without its headline and curves."""
    h, curves = cfg.get("headline") or {}, cfg.get("curves") or {}
    base = [p for p in curves.get("baseline_one_to_one", []) if p["threshold"] <= h.get("threshold", -1) + 1e-9]
    if not h.get("n_narrow") or not base:
        return None
    recall, b = h["one_to_one"] / h["n_narrow"], base[-1]
    exact = abs(b["threshold"] - h["threshold"]) < 1e-9
    how = str(cfg.get("baseline") or "random pairs").replace(" of B ", f" of {cfg.get('b')} ")  # B: the second side
    text = (f"Matching {h['wide']} ↔ {h['narrow']}: {recall:.1%} of {h['narrow']}'s {h['n_narrow']:,} latents have "
            f"a one-to-one partner at {h['signal'].replace('_', ' ')} ≥ {h['threshold']:.2f} vs "
            f"{'' if exact else 'at most '}{b['fraction']:.1%} for the random baseline ({how}).")
    if recall_at_reference(recall, b["fraction"]):
        return Reference("match", (h["narrow"], h["wide"]), text, True, "At its reference: no more one-to-one "
                         f"partners than the random baseline finds (within {RECALL_MARGIN:.0%} of the latents).")
    return Reference("match", (h["narrow"], h["wide"]), text, False)


def sfal_references(name: str, aggregates: dict[str, Any], kind: str | None = None) -> list[Reference]:
    """Mean NDCG of `name` per embedding model beside the shuffled baseline (sfal/NAME/summary.json); `kind`:
    what the explanations were (sfal/NAME/cfg.json's explanations.kind)."""
    out = []
    for model, a in aggregates.items():
        text = (f"SFAL of {name} ({model}{f', {kind}' if kind else ''}): mean NDCG {a['ndcg_mean']:.3f} over "
                f"{a['n_scored']:,} latents vs {a['baseline_ndcg_mean']:.3f} ± {a['baseline_ndcg_sd']:.3f} with "
                "shuffled explanations.")
        at = ndcg_at_reference(a["ndcg_mean"], a["baseline_ndcg_mean"], a["baseline_ndcg_sd"])
        out.append(Reference("sfal", (name,), text, at, f"At its reference: co-occurrence neighbours agree with the "
                             f"explanations no more than shuffled ones do (within {NDCG_SDS:g} s.d.)." if at else None))
    return out


def tail_reference(run: str, layer: int, t: dict[str, Any]) -> Reference:
    """Where a Δnorm tail fires most beside the all-latent rate (`diff.sentences.leaning_tail`)."""
    p = f"{t['p']:.1e}" if t["p"] < 1e-3 else f"{t['p']:.3f}"
    text = (f"Model diff {run!r}, layer {layer}: {t['k']} of the {t['n']} most {t['side']}-leaning latents "
            f"({t['k'] / t['n']:.0%}) fire most on {t['group']} vs {t['share_all']:.1%} of all {t['n_all']:,} "
            f"latents (Bonferroni-corrected binomial p = {p}).")
    if tail_at_reference(t["p"]):
        return Reference("diff", (run,), text, True, f"At its reference: the {t['side']}-leaning tail favours "
                         f"{t['group']} no more than all latents do (p ≥ {ALPHA:g}).")
    return Reference("diff", (run,), text, False)
