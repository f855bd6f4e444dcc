"""The report's headline numbers beside their reference points, and the gating of latent headlines: an LLM
explanation set that does not beat shuffled on its run's own scores never leads a latent page; the top-token
description does, with the LLM's text beside its score, marked at chance."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from saelab.interp.control import compare_scores
from saelab.interp.summary import comparisons
from saelab.report import ReportConfig, run
from saelab.report.summary import SUMMARY_NAME

from .workspace import IMG, SCRIPT, add_evals, model_view

EXPLAINED = [0, *range(2, 12)]  # the session workspace's interp run: latent 1's explanation failed
SCORERS = ("detection", "fuzz")


def _write(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def top_tokens_text(latent: int) -> str:
    return f"top tokens: ' river' 40%, {IMG} #{latent}"


def score_run(run_dir: Path, llm_beats: bool) -> None:
    """Give the run top-token descriptions and scores of all three sets (explanation, top-tokens, shuffled), and
    the summary's comparisons as interp computes them: the LLM's AUCs well above shuffled, or at it."""
    rng = np.random.default_rng(0)
    shuffled = {str(l): 0.5 + rng.normal(0, 0.03) for l in EXPLAINED}
    auc = {"shuffled": shuffled,
           "top-tokens": {l: v + 0.1 + rng.normal(0, 0.01) for l, v in shuffled.items()},
           "explanation": {l: v + (0.3 if llm_beats else 0.0) + rng.normal(0, 0.03) for l, v in shuffled.items()}}
    for latent in range(12):  # latent 1 too: the top-token description exists where the LLM failed
        _write(run_dir / "explanations" / "top-tokens" / f"{latent}.json",
               {"latent": latent, "explanation": top_tokens_text(latent), "failed": False, "reason": None})
    table = {s: {v: {"kind": "classification", "per_latent": {l: {"auc": a, "balanced_accuracy": a}
                                                                for l, a in per.items()}}
                 for v, per in auc.items()} for s in SCORERS}
    pooled = {"auc": 0.6, "balanced_accuracy": 0.6, "n_examples": 220, "n_failed": 0}
    _write(run_dir / "per_latent.json", {s: {v: t["per_latent"] for v, t in d.items()} for s, d in table.items()})
    _write(run_dir / "summary.json", {
        "n_latents": len(EXPLAINED), "explainer": "default", "skipped": {},
        "scores": {s: {v: {"n_latents": len(EXPLAINED), "kind": "classification", "pooled": pooled} for v in auc}
                   for s in SCORERS},
        "comparisons": comparisons(table, seed=0)})


@pytest.fixture
def scored(workspace, tmp_path):
    """A copy of the session workspace whose interp run was scored against shuffled (`llm_beats` or not)."""
    def make(llm_beats: bool):
        ws = type(workspace)(tmp_path / f"ws-{llm_beats}")
        shutil.copytree(workspace.root, ws.root, ignore=shutil.ignore_patterns("diff"))
        score_run(ws.root / "interp" / "narrow-run", llm_beats)
        return ws
    return make


def explanation_section(index: Path, latent: int) -> str:
    html = (index.parent / "narrow" / "latents" / f"{latent}.html").read_text(encoding="utf-8")
    return html.split('<section class="explanation"')[1].split("</section>")[0]


def headline(section: str) -> str:
    return re.search(r'<p class="expl">(.*?)</p>', section, re.S).group(1)


def table_explanations(index: Path) -> dict[int, str | None]:
    text = (index.parent / "data" / "narrow-latents.js").read_text(encoding="utf-8")
    t = json.loads(text[len("window.SAELAB_TABLE = "):].rstrip().rstrip(";"))
    col = t["columns"].index("explanation")
    return {r[0]: r[col] for r in t["rows"]}


def test_explanations_at_chance_give_way_to_the_top_token_description(scored, tmp_path):
    index = run(ReportConfig(max_latent_pages=12), scored(False), tmp_path / "site", model_view())
    section = explanation_section(index, 2)
    assert "river" in headline(section) and "topic 2" not in headline(section)  # the top-token description leads
    aside = section.split('class="aside at-chance"')[1]
    assert "words about topic 2" in aside and '<span class="badge">at chance</span>' in aside
    assert re.search(r"score detection 0\.\d+, fuzz 0\.\d+", aside)  # the LLM's text beside its own scores
    assert "do not beat shuffled" in aside
    assert table_explanations(index)[2] == top_tokens_text(2)  # the table leads with the same text
    card = index.read_text(encoding="utf-8").split('id="stage-interp-narrow"')[1].split("</div>")[0]
    assert "at chance" in card
    failed = explanation_section(index, 1)  # the LLM failed here: the failure is shown, not papered over
    assert "river" in headline(failed) and "failed: no &#39;Explanation:&#39; line" in failed.split("aside")[1]


def test_explanations_that_beat_shuffled_stay_the_headline(scored, tmp_path):
    index = run(ReportConfig(max_latent_pages=12), scored(True), tmp_path / "site", model_view())
    section = explanation_section(index, 2)
    assert "words about topic 2" in headline(section) and "aside" not in section and "at chance" not in section
    assert table_explanations(index)[2] == "words about topic 2"


def test_llm_and_corpus_strings_stay_escaped_when_set_aside(scored, tmp_path):
    index = run(ReportConfig(max_latent_pages=12), scored(False), tmp_path / "site", model_view())
    section = explanation_section(index, 0)
    assert SCRIPT not in section and IMG not in section
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt; mentions of rivers" in section.split("aside")[1]
    assert "&lt;img src=x onerror=" in headline(section)


def test_the_report_builds_without_baselines_and_says_what_it_has(site):
    index, _ = site
    html = index.read_text(encoding="utf-8")
    assert 'id="headline"' in html and "PCA" not in html  # no evaluation in the session workspace
    summary = (index.parent / SUMMARY_NAME).read_text(encoding="utf-8")
    assert "SFAL of narrow" in summary and "0.300" in summary  # NDCG beside its shuffled baseline
    assert "Model diff" in summary and "of all" in summary  # the Δnorm tails beside the all-latent rate
    assert json.loads((index.parent / "cfg.json").read_text())["summary"] == SUMMARY_NAME


def test_fvu_and_control_show_beside_their_numbers_when_present(scored, tmp_path):
    ws = scored(False)
    add_evals(ws, narrow_fvu=0.10, pca_fvu=0.40)
    run_dir = ws.root / "interp" / "narrow-run"
    real = json.loads((run_dir / "per_latent.json").read_text())
    control = {"detection": real["detection"]}  # the control's scores: as good as the trained model's
    _write(run_dir / "control.json", {"comparisons": compare_scores(real, control, (11, 11), n_resamples=500)})
    index = run(ReportConfig(max_latent_pages=2), ws, tmp_path / "site", model_view())
    summary = (index.parent / SUMMARY_NAME).read_text(encoding="utf-8")
    assert re.search(r"FVU of narrow 0\.100 vs 0\.400 for PCA with 4 directions", summary)
    detection = next(line for line in summary.splitlines() if ", detection:" in line)
    assert re.search(r"0\.\d{3} for the random-model control", detection) and "At the random-model control" in detection
    assert "control not run" in next(line for line in summary.splitlines() if ", fuzz:" in line)  # not scored there
    page = (index.parent / "narrow" / "index.html").read_text(encoding="utf-8")
    assert "PCA with 4 directions" in page and "random-model control" in page  # the dictionary page's numbers too


def test_a_number_at_its_reference_says_so_on_the_front_page_and_in_the_summary(scored, tmp_path):
    ws = scored(True)
    add_evals(ws, narrow_fvu=0.40, pca_fvu=0.40)
    index = run(ReportConfig(max_latent_pages=2), ws, tmp_path / "site", model_view())
    fvu = next(li for li in re.findall(r"<li[^>]*>.*?</li>", index.read_text(encoding="utf-8"), re.S)
               if "FVU of narrow" in li)
    assert 'class="at-ref"' in fvu and "at its reference" in fvu and "no better than PCA" in fvu
    lines = (index.parent / SUMMARY_NAME).read_text(encoding="utf-8").splitlines()
    assert any(line.startswith("- FVU of narrow") and "At its reference" in line for line in lines)
    interp = [line for line in lines if line.startswith("- narrow (run narrow-run), detection")]
    assert interp and "Above chance by" in interp[0] and "At chance" not in interp[0]
