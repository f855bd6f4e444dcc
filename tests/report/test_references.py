"""Each headline number beside its reference point: the rule for "at its reference" per metric, and the
sentence that says so exactly when it holds."""

from __future__ import annotations

import pytest

from saelab.interp.metrics import MIN_VERDICT_LATENTS
from saelab.report import references as refs


def comparison(difference: float, low: float, high: float, n: int = 40, above: bool | None = None,
               variant: str = "explanation", reference: str = "shuffled", mean_reference: float = 0.5) -> dict:
    if above is None and n >= MIN_VERDICT_LATENTS:
        above = low > 0
    return {"variant": variant, "reference": reference, "metric": "auc", "n_latents": n,
            "mean": mean_reference + difference, "mean_reference": mean_reference, "difference": difference,
            "ci_low": low, "ci_high": high, "p_one_sided": 0.01 if low > 0 else 0.4, "above": above}


def summary(*rows: dict, scorers: tuple[str, ...] = ("detection",)) -> dict:
    variants = {r["variant"] for r in rows} | {r["reference"] for r in rows}
    return {"n_latents": 40, "scores": {s: {v: {"n_latents": 40, "pooled": {"n_examples": 800, "n_failed": 0}}
                                            for v in variants} for s in scorers},
            "comparisons": {s: list(rows) for s in scorers}}


@pytest.mark.parametrize("c, beats", [
    (comparison(0.10, 0.05, 0.15), True),
    (comparison(0.02, -0.01, 0.05), False),  # CI includes 0
    (comparison(-0.05, -0.10, -0.01), False),  # below its reference
    (comparison(0.10, 0.05, 0.15, n=MIN_VERDICT_LATENTS - 1), False),  # too few latents for a verdict
    (comparison(0.10, 0.05, 0.15, above=False), False),  # interp's verdict (signed-rank test) against it
    (None, False),  # never compared
])
def test_an_explanation_set_beats_its_reference_only_above_it_with_a_ci_clear_of_zero(c, beats):
    assert refs.beats(c) is beats


def test_a_set_beats_shuffled_only_on_every_scorer_that_scored_it():
    good, chance = comparison(0.1, 0.05, 0.15), comparison(0.01, -0.02, 0.04)
    assert refs.set_beats_shuffled(summary(good, scorers=("detection", "embedding")))
    mixed = summary(good, scorers=("detection", "embedding"))
    mixed["comparisons"]["embedding"] = [chance]
    assert not refs.set_beats_shuffled(mixed)
    assert not refs.set_beats_shuffled({"scores": {}, "comparisons": {}})  # never scored against shuffled


def test_fvu_is_at_its_reference_when_not_clearly_below_pca():
    assert not refs.fvu_at_reference(0.115, 0.357)
    assert refs.fvu_at_reference(0.357, 0.357) and refs.fvu_at_reference(0.40, 0.357)
    assert refs.fvu_at_reference(0.357 * (1 - refs.FVU_MARGIN / 2), 0.357)


def test_the_other_rules_hold_at_their_reference_and_not_clearly_above_it():
    assert refs.recall_at_reference(0.005, 0.0) and not refs.recall_at_reference(0.268, 0.0)
    assert refs.ndcg_at_reference(0.153, 0.153, 0.001) and not refs.ndcg_at_reference(0.281, 0.153, 0.001)
    assert refs.tail_at_reference(0.4) and not refs.tail_at_reference(8e-4)


def _metrics(name: str, fvu: float, kind: str = "sae", k: int = 32) -> dict:
    d = {"name": name, "kind": kind, "k": k, **({"method": "pca"} if kind == "dense" else {})}
    return {"dictionary": d, "reconstruction": {"fvu": fvu, "n_tokens": 1000}, "tokens_hash": "t", "windows": [8, 12]}


def test_a_number_at_its_reference_gets_a_sentence_saying_so_and_one_above_it_does_not():
    below = refs.fvu_reference("sae", _metrics("sae", 0.1), _metrics("pca-32", 0.4, "dense"))
    at = refs.fvu_reference("sae", _metrics("sae", 0.41), _metrics("pca-32", 0.4, "dense"))
    none = refs.fvu_reference("sae", _metrics("sae", 0.1), None)
    assert "0.400" in below.text and "PCA with 32 directions" in below.text  # the reference, beside the number
    assert below.at_reference is False and below.verdict is None and below.line == below.text
    assert at.at_reference is True and at.verdict and "reference" in at.verdict.lower() and at.verdict in at.line
    assert none.at_reference is None and none.verdict is None and "dense:pca" in none.text


def test_interp_lines_show_shuffled_top_tokens_and_the_control_when_it_ran():
    s = summary(comparison(0.01, -0.02, 0.04),
                comparison(-0.02, -0.05, 0.0, reference="top-tokens", mean_reference=0.53))
    [without] = refs.interp_references("full", s, "smollm2-135m")
    assert "0.500 shuffled" in without.text and "0.530 top-token" in without.text and "control not run" in without.text
    assert without.at_reference is True and "chance" in without.verdict.lower()
    control = {"detection": {"explanation": comparison(0.2, 0.1, 0.3, reference="control", mean_reference=0.466)}}
    [with_control] = refs.interp_references("full", s, "smollm2-135m", control)
    assert "0.466 for the random-model control" in with_control.text and "not run" not in with_control.text
    [above] = refs.interp_references("full", summary(comparison(0.1, 0.05, 0.15)), "qwen")
    assert above.at_reference is False and above.verdict is None and "+0.100" in above.text
    at_control = {"detection": {"explanation": comparison(0.0, -0.1, 0.1, reference="control"),
                                "top-tokens": comparison(0.3, 0.2, 0.4, variant="top-tokens", reference="control")}}
    [at] = refs.interp_references("full", summary(comparison(0.1, 0.05, 0.15)), "qwen", at_control)
    assert at.at_reference is True and "control" in at.verdict and "chance" not in at.verdict.lower()


def test_failures_are_said_beside_the_scores():
    s = {"explanation_failures": {"default": {"n_failed": 2, "n": 4, "reasons": {"empty answer": 2}}},
         "scores": {"detection": {"explanation": {"n_latents": 2, "pooled": {"n_examples": 0, "n_failed": 3}}}}}
    lines = refs.failure_sentences(s)
    assert len(lines) == 2 and "2 of 4 failed" in lines[0] and "3 failed" in lines[1]


def test_match_and_tail_references_carry_their_baselines():
    cfg = {"b": "full", "baseline": "decoder rows of B rotated by a random orthogonal matrix",
           "headline": {"narrow": "full", "wide": "ultra", "n_narrow": 100, "one_to_one": 30, "signal":
                        "decoder_cosine", "threshold": 0.7},
           "curves": {"baseline_one_to_one": [{"threshold": t, "fraction": f} for t, f in ((0.6, 0.02), (0.7, 0.0))]}}
    m = refs.match_reference(cfg)
    assert m is not None and "30.0%" in m.text and "0.0% for the random baseline" in m.text and not m.at_reference
    assert "rows of full rotated" in m.text
    cfg["headline"]["one_to_one"] = 0
    assert refs.match_reference(cfg).at_reference is True
    tail = {"side": "target", "group": "sport", "k": 3, "n": 20, "share_all": 0.12, "n_all": 500, "p": 0.6}
    t = refs.tail_reference("run", 15, tail)
    assert "12.0% of all 500" in t.text and t.at_reference and "no more than all latents" in t.verdict
