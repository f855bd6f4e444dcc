"""The random-model control (interp.control): two runs' per-latent scores side by side, the gap with a two-sample
bootstrap CI, the verdict in words, failures counted on both sides, settings that differ named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from saelab.errors import ArtifactError, ConfigError
from saelab.interp.control import (
    N_RESAMPLES,
    SECTION,
    compare_runs,
    compare_scores,
    find_control,
    setting_differences,
    two_sample_gap,
    write_control,
)

VARIANTS = ("explanation", "top-tokens", "shuffled")


def _table(means: dict[str, float], n: int, seed: int, first: int = 0, scorer: str = "detection",
           sd: float = 0.05) -> dict:
    """per_latent.json of a run: `n` latents per variant, AUC ~ N(means[variant], sd)."""
    rng = np.random.default_rng(seed)
    return {scorer: {v: {str(first + i): {"auc": float(np.clip(rng.normal(m, sd), 0, 1)), "balanced_accuracy": m,
                                          "n_failed": 0} for i in range(n)} for v, m in means.items()}}


TRAINED = {"explanation": 0.80, "top-tokens": 0.70, "shuffled": 0.50}
RANDOM = {"explanation": 0.65, "top-tokens": 0.70, "shuffled": 0.50}


def _rows(real, control, n=(40, 30)) -> dict[str, dict]:
    return {r["variant"]: r for r in compare_scores(real, control, n, seed=0)["detection"]}


def test_gap_ci_excludes_zero_when_the_real_run_is_clearly_better():
    rng = np.random.default_rng(0)
    g = two_sample_gap(rng.normal(0.8, 0.05, 40), rng.normal(0.65, 0.05, 30))
    assert g["n_resamples"] == N_RESAMPLES == 10_000
    assert 0 < g["ci_low"] < g["difference"] < g["ci_high"] and g["p_one_sided"] < 1e-6
    assert g["difference"] == pytest.approx(g["mean"] - g["mean_reference"])


def test_gap_ci_includes_zero_when_equal_and_is_seeded():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.7, 0.05, 40), rng.normal(0.7, 0.05, 40)
    g = two_sample_gap(a, b, seed=3)
    assert g["ci_low"] < 0 < g["ci_high"] and g["p_one_sided"] > 0.05
    assert two_sample_gap(a, b, seed=3) == g and two_sample_gap(a, b, seed=4)["ci_low"] != g["ci_low"]


def test_two_samples_of_different_sizes_are_resampled_independently():
    # identical values on each side: every draw gives the same gap, whatever the sizes
    g = two_sample_gap(np.full(7, 0.9), np.full(50, 0.6), n_resamples=500)
    assert g["ci_low"] == pytest.approx(0.3) and g["ci_high"] == pytest.approx(0.3)


def test_rows_per_explanation_set_with_verdicts_in_words():
    rows = _rows(_table(TRAINED, 40, 0), _table(RANDOM, 30, 1, first=100))
    assert list(rows) == list(VARIANTS)
    e, t, s = rows["explanation"], rows["top-tokens"], rows["shuffled"]
    assert e["above"] is True and e["ci_low"] > 0 and e["metric"] == "auc" and e["reference"] == "control"
    assert e["sentence"].startswith(f"Detection AUC {e['mean']:.3f} vs {e['mean_reference']:.3f} on the "
                                    f"random-model control: gap {e['difference']:+.3f}, 95% CI [{e['ci_low']:+.3f}, ")
    assert e["sentence"].endswith("these explanations separate the trained model from a random one: they measure "
                                  "something the trained model learned.")
    assert t["above"] is False and t["ci_low"] < 0 < t["ci_high"]
    assert t["sentence"].endswith("these top-token descriptions do not separate the trained model from a random one.")
    assert s["above"] is None and "chance on both sides" in s["sentence"]
    assert (e["n_latents"], e["n_latents_reference"]) == (40, 30)


def test_a_control_that_scores_higher_says_so():
    rows = _rows(_table(RANDOM, 40, 0), _table(TRAINED, 40, 1, first=100), (40, 40))
    e = rows["explanation"]
    assert e["above"] is False and e["ci_high"] < 0
    assert "the random model's dictionary scores higher" in e["sentence"]


def test_too_few_latents_give_no_verdict():
    rows = _rows(_table(TRAINED, 40, 0), _table(RANDOM, 6, 1, first=100), (40, 6))
    assert rows["explanation"]["above"] is None
    assert "too few latents for a verdict (40 and 6; 10 needed on each side)" in rows["explanation"]["sentence"]


def test_failed_latents_are_counted_on_both_sides():
    real, control = _table(TRAINED, 40, 0), _table(RANDOM, 30, 1, first=100)
    for latent in ("0", "1", "2"):  # explanations failed: never scored
        del real["detection"]["explanation"][latent]
    control["detection"]["explanation"]["100"]["n_failed"] = 4  # answers failed, AUC of the rest
    e = _rows(real, control, (40, 31))["explanation"]
    assert (e["n_latents"], e["unscored"], e["n_latents_reference"], e["unscored_reference"]) == (37, 3, 30, 1)
    assert (e["failed_answers"], e["failed_answers_reference"]) == (0, 4)


def test_balanced_accuracy_where_a_latent_of_either_run_has_no_auc():
    real, control = _table(TRAINED, 20, 0), _table(RANDOM, 20, 1, first=100)
    control["detection"]["explanation"]["105"]["auc"] = None
    rows = _rows(real, control, (20, 20))
    assert rows["explanation"]["metric"] == "balanced_accuracy" and rows["top-tokens"]["metric"] == "auc"
    assert "balanced accuracy 0.800 vs 0.650" in rows["explanation"]["sentence"]


def test_intruder_compares_its_one_variant_under_either_name():
    real = {"intruder": {"explanation": {str(i): {"accuracy": 0.9, "n_failed": 0} for i in range(12)}}}
    control = {"intruder": {"top-tokens": {str(i): {"accuracy": 0.3, "n_failed": 0} for i in range(12)}}}
    (row,) = compare_scores(real, control, (12, 12))["intruder"]
    assert (row["variant"], row["metric"], row["above"]) == ("none shown", "accuracy", True)
    assert "these latents separate" in row["sentence"]


def test_only_common_scorers_are_compared_and_none_in_common_is_refused():
    real = {**_table(TRAINED, 12, 0), **_table(TRAINED, 12, 1, scorer="embedding")}
    assert list(compare_scores(real, _table(RANDOM, 12, 2), (12, 12))) == ["detection"]
    with pytest.raises(ConfigError, match="--control: .*none in common"):
        setting_differences({"scorers": ["detection"]}, {"scorers": ["embedding"]}, "--control")


def test_settings_that_differ_are_named_and_spread_settings_are_not():
    a = {"scorers": ["detection"], "explainer": "default", "batch_size": 8, "examples": {"n_examples_test": 50}}
    b = {"scorers": ["detection", "fuzz"], "explainer": "top-tokens", "batch_size": 2,
         "examples": {"n_examples_test": 20}}
    assert setting_differences(a, b) == ["examples.n_examples_test: 50 vs 20", "explainer: 'default' vs 'top-tokens'",
                                         "scorers: ['detection'] vs ['detection', 'fuzz']"]


def _run_dir(root: Path, per_latent: dict, model: str, config: dict | None = None, partial: bool = False) -> Path:
    """A finished interp run as the stage writes it, reduced to what the comparison reads."""
    root.mkdir(parents=True)
    config = config or {"scorers": list(per_latent), "explainer": "default", "examples": {"n_examples_test": 50}}
    n = len(next(iter(next(iter(per_latent.values())).values())))
    (root / "run_config.json").write_text(json.dumps({"artifact": "interp", "model": model, "hookpoint": "layers.6",
                                                      "config": config}))
    (root / "summary.json").write_text(json.dumps({"n_latents": n, "partial": partial, "skipped": {"-1": "dead"},
                                                   "explainer": config["explainer"],
                                                   "explanation_failures": {"default": {"n_failed": 1}}}))
    (root / "per_latent.json").write_text(json.dumps(per_latent))
    (root / "summary.md").write_text("# Auto-interpretation\n\nthe run's own summary\n")
    return root


def test_compare_and_write_into_the_run(tmp_path):
    real = _run_dir(tmp_path / "real", _table(TRAINED, 40, 0), "/models/smol")
    control = _run_dir(tmp_path / "control", _table(RANDOM, 30, 1, first=100), "random:/models/smol@0",
                       {"scorers": ["detection"], "explainer": "default", "examples": {"n_examples_test": 20}})
    c = compare_runs(real, control)
    assert c["control"] == str(control.resolve()) and c["control_model"] == "random:/models/smol@0"
    assert c["differences"] == ["examples.n_examples_test: 50 vs 20"]
    assert c["warnings"] == ["the runs were made with other settings (examples.n_examples_test: 50 vs 20)"]
    assert "two-sample" in c["design"] and c["n_resamples"] == 10_000
    write_control(real, c)
    write_control(real, compare_runs(real, control))  # again: the section is replaced, not repeated
    md = (real / "summary.md").read_text()
    assert md.startswith("# Auto-interpretation\n\nthe run's own summary\n") and md.count(SECTION) == 1
    assert "these explanations separate the trained model from a random one" in md
    assert "two-sample bootstrap" in md and "examples.n_examples_test: 50 vs 20" in md
    assert "- this run: 40 latents (1 skipped)" in md and "- control: 30 latents (1 skipped)" in md
    cfg = json.loads((real / "run_config.json").read_text())
    assert cfg["control"] == {"run": str(control.resolve()), "model": "random:/models/smol@0"}
    assert json.loads((real / "summary.json").read_text())["control"]["comparisons"]["detection"][0]["above"]
    assert json.loads((real / "control.json").read_text())["sides"]["real"]["model"] == "/models/smol"


def test_a_control_not_made_on_a_random_model_is_compared_with_a_warning(tmp_path):
    real = _run_dir(tmp_path / "real", _table(TRAINED, 12, 0), "/models/smol")
    control = _run_dir(tmp_path / "control", _table(RANDOM, 12, 1), "/models/other")
    assert any("not cached from a random: model" in w for w in compare_runs(real, control)["warnings"])


def test_bad_controls_are_refused_naming_the_argument(tmp_path):
    with pytest.raises(ArtifactError, match=r"^--control: got 'nope', but there is no interp run at"):
        find_control(None, "nope", "--control")
    partial = _run_dir(tmp_path / "partial", _table(RANDOM, 12, 1), "random:x@0", partial=True)
    with pytest.raises(ArtifactError, match="--control: .* is unfinished"):
        find_control(None, partial, "--control")
    real = _run_dir(tmp_path / "real", _table(TRAINED, 12, 0), "/models/smol")
    with pytest.raises(ConfigError, match="--control: .* is the run being compared"):
        compare_runs(real, real, arg="--control")
