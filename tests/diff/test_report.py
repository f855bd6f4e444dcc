"""The diff report from hand-made artifacts: sentences carry the numbers, untrusted text is escaped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saelab.diff.report import generate_report
from saelab.errors import ArtifactError, ConfigError
from saelab.render import md_escape

SCRIPT = "<script>alert('x')</script>"
LAYER = 6


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def _latent(j: int, tag: str, delta: float, count: int, **kw) -> dict:
    return {"latent": j, "delta_norm": delta, "tag": tag, "decoder_cosine": 0.9, "decoder_change": 0.2,
            "base_norm": 1.0, "target_norm": 1.0, "count": count, "frequency": count / 1000,
            "frequency_by_group": [count / 1000, 0.0, 0.0], "nu_eps": None, "nu_r": None, "artifact": None,
            "verdict": None, **kw}


@pytest.fixture
def run_dir(tmp_path):
    """A run as the pipeline wrote it before run_config.json became cfg.json (the old name must keep working)."""
    out = tmp_path / "run"
    rows = ([_latent(j, "target-only", 0.02, 50, nu_eps=0.1, nu_r=0.2, artifact=False, verdict="genuine",
                     frequency_by_group=[0.01, 0.08, 0.0]) for j in range(3)]
            + [_latent(3, "target-only", 0.05, 40, nu_eps=0.9, nu_r=0.1, artifact=True, verdict="complete shrinkage")]
            + [_latent(4, "base-only", 0.97, 30)] + [_latent(j, "shared", 0.5, 10) for j in range(5, 40)]
            + [_latent(40, "other", 0.3, 5), _latent(41, "shared", 0.5, 0)])
    table = {"layer": LAYER, "hookpoint": "model.layers.6", "d_sae": 42, "threshold": 0.1, "n_tokens": 1000,
             "n_alive": 41, "n_dead": 1, "counts": {"target-only": 4, "base-only": 1, "shared": 35, "other": 1},
             "groups": ["corpus", "sport", SCRIPT], "group_tokens": [900, 60, 40],
             "tag_by_group": {"target-only": [0.001, 0.04, 0.0], "base-only": [0.002, 0.0, 0.0],
                              "shared": [0.01, 0.01, 0.01]},
             "scaling": {"n_tested": 5, "n_genuine": 3, "limit": 0.3, "tested": "all"},
             "fvu": {"base": 0.21, "target": 0.24, "n_tokens": 300, "split": "held-out corpus"}, "latents": rows}
    d = out / "features" / f"layer_{LAYER:02d}"
    _write(d / "latent_table.json", table)
    _write(d / "naming" / "named.json", {
        "explainer": "qwen2.5-coder-1.5b", "kind": "llm", "detection_method": "LLM judge",
        "latents": [{"latent": 0, "group": "target-only", "explanation": f"football scores {SCRIPT} | pipes",
                     "failed": False, "reason": None, "n_activating_examples": 40,
                     "detection": {"f1": 0.81, "precision": 0.8, "recall": 0.82, "balanced_accuracy": 0.8,
                                   "auc": 0.9, "n_examples": 20, "n_failed": 0},
                     "shuffled_detection": {"f1": 0.45, "precision": 0.5, "recall": 0.4, "balanced_accuracy": 0.5,
                                            "auc": 0.5, "n_examples": 20, "n_failed": 0}},
                    {"latent": 4, "group": "base-only", "explanation": None, "failed": True,
                     "reason": "no 'Explanation:' line", "n_activating_examples": 20, "detection": None,
                     "shuffled_detection": None}],
        "skipped": {}, "pooled": {"explanation": {"f1": 0.81, "n_examples": 20}, "shuffled": {"f1": 0.45}}})
    _write(d / "examples.json", {"0": [{"window": 3, "group": "sport", "max": 2.5,
                                        "pieces": ["the", " goal", SCRIPT, " won"], "activations": [0, 2.5, 1.0, 0]}],
                                 "4": []})
    _write(out / "activations" / "sweep" / "sweep.json", {
        "layers": [5, 6, 7], "rel_norm": [0.1, 0.3, 0.35], "cosine": [0.99, 0.95, 0.94], "cka": [0.99, 0.9, 0.88],
        "cka_plain": [1, 1, 1], "increment": [0.1, 0.2, 0.05], "changed_layer": 6, "groups": ["corpus", "sport"],
        "rel_norm_by_group": {}, "kl_by_group": {"corpus": 0.02, "sport": 0.31}, "kl_mean": 0.05,
        "top_kl": [{"window": 1, "pos": 4, "group": "sport", "kl": 2.0, "token": SCRIPT, "context": f"a {SCRIPT} b",
                    "base_next": "x", "target_next": "|y|"}], "n_tokens": 1000, "n_cka_tokens": 500, "notes": {}})
    _write(out / "run_config.json", {
        "output_dir": str(out), "layers": [LAYER], "base": {"spec": "base-model"}, "target": {"spec": "target-model"},
        "naming": {"min_examples": 12}, "crosscoder_summary": "42 latents, k=4, 1,000 training tokens",
        "data": {"corpus": "mixed-en", "n_corpus_windows": 4, "n_prompts": 10, "categories": ["sport", SCRIPT],
                 "n_text_tokens": 1000, "n_prompt_tokens": 100, "ctx_len": 256}})
    return out


def test_sentences_carry_the_measured_numbers(run_dir):
    md_path, html_path = generate_report(run_dir, "both")
    md = md_path.read_text()
    assert ("Layer 6: 4 target-only latents (9.8% of the 41 that fire), most of them firing on sport prompts "
            "(4.00% of its tokens per latent, 40.0× their rate on the corpus)") in md
    assert "1 base-only (2.4%)" in md and "35 shared (85.4%)" in md and "1 of 42 latents never fired" in md
    # the table predates `delta_norm_spread`: the spread is computed from its rows (the 41 that fire)
    assert ("Δnorm of the 41 latents that fire (0: target only, 1: base only): median 0.500, interquartile range "
            "0.500–0.500, 5th–95th percentile 0.020–0.500, s.d. 0.163; 4 below 0.1 (target-only), 35 within 0.1 of "
            "0.5 (shared), 1 above 0.9 (base-only).") in md
    assert "Latent scaling: 3 of 5 tested exclusive latents have ν\\_ε and ν\\_r below 0.3" in md
    assert ("(detection F1 0.81 vs 0.45 shuffled; fires most on sport (8.0% of its tokens, 8.0× its corpus rate))"
            in md)
    assert "the largest step up is at layer 6 (+0.200)" in md
    assert "Next-token KL(target ‖ base) is highest on sport (0.310 nats per token vs 0.020 on corpus text)" in md
    assert "FVU 0.210 (base) and 0.240 (target)" in md
    assert "Pooled detection F1 0.81 vs 0.45 with shuffled explanations" in md and "above chance" in md
    assert "explained by the LLM qwen2.5-coder-1.5b" in md
    assert "failed: no &#39;Explanation:&#39; line" in html_path.read_text()


def test_untrusted_text_is_escaped(run_dir):
    md_path, html_path = generate_report(run_dir, "both")
    html, md = html_path.read_text(), md_path.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "football scores &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; | pipes" in html
    assert "\\| pipes" in md and "\\|y\\|" in md  # a pipe cannot end a Markdown table cell
    assert '<span class="t on"' in html and "« goal&lt;script&gt;alert('x')&lt;/script&gt;»" in md
    assert "../visualizations/" not in md or "\\_" not in md.split("../visualizations/")[1].split(")")[0]


def test_formats_and_escaping_helper(run_dir):
    assert [p.name for p in generate_report(run_dir, "markdown")] == ["report.md"]
    assert [p.name for p in generate_report(run_dir, "html")] == ["report.html"]
    with pytest.raises(ConfigError, match="report_format"):
        generate_report(run_dir, "pdf")  # type: ignore[arg-type]
    assert md_escape("a|b*c_d`e [x](y) <i>&\nz") == "a\\|b\\*c\\_d\\`e \\[x\\](y) &lt;i&gt;&amp; ⏎ z"


def test_leaning_tail_names_the_category_the_target_tail_fires_on():
    from saelab.diff.sentences import layer_sentences, leaning_tail

    groups = ["corpus", "sport", "code"]
    rng = __import__("random").Random(0)
    rows = []
    for j in range(200):  # 20 target-leaning latents that fire on sport; the rest spread over the three groups
        fav = "sport" if j < 20 else rng.choice(["corpus", "code", "code", "sport"] if j > 40 else ["corpus", "code"])
        rates = [0.01 if g != fav else 0.05 for g in groups]
        rows.append(_latent(j, "shared", 0.40 + j * 0.001, 30 if j != 5 else 3, frequency_by_group=rates))
    table = {"groups": groups, "latents": rows}
    t = leaning_tail(table, "target")
    assert t["group"] == "sport" and t["n"] == 20 and t["k"] == 19  # latent 5 fires 3 times: left out
    assert t["lo"] == pytest.approx(0.400) and t["hi"] == pytest.approx(0.420) and t["n_all"] == 199
    assert t["p"] < 1e-6
    base = leaning_tail(table, "base")
    assert base["p"] > 0.01  # no planted group on the base side: its largest group is not surprising
    assert leaning_tail({"groups": groups, "latents": rows[:30]}, "target") is None  # too few latents to say
    from saelab.diff.sentences import tail_table

    tails = tail_table(table)
    sport = next(r for r in tails["rows"] if r["group"] == "sport")
    assert (sport["target"] == 19
            and sum(r["target"] for r in tails["rows"]) == 20 == sum(r["base"] for r in tails["rows"]))
    assert sum(r["share_all"] for r in tails["rows"]) == pytest.approx(1.0)
    view = {"layer": 6, "named": None, "named_rows": [], "table": {
        **table, "counts": {"shared": 200}, "n_alive": 200, "n_dead": 0, "d_sae": 200, "n_tokens": 9000,
        "threshold": 0.1}}
    text = " ".join(layer_sentences(view))
    assert "Of the 20 most target-leaning latents (lowest Δnorm, 0.400–0.420; each firing ≥ 20 times), 19 fire " \
           "most on sport, the group where" in text


def test_tokenizer_notes_are_listed_among_the_limits(run_dir):
    cfg = json.loads((run_dir / "run_config.json").read_text())
    _write(run_dir / "run_config.json", {**cfg, "tokenizer_notes": ["eos_token_id 2 vs 7"]})
    md = generate_report(run_dir, "markdown")[0].read_text()
    assert "differ in special tokens (eos\\_token\\_id 2 vs 7)" in md


def test_a_run_with_cfg_json_reads_the_same_and_the_stylesheet_is_inlined(run_dir):
    old = [p.read_text() for p in generate_report(run_dir, "both")]
    (run_dir / "run_config.json").rename(run_dir / "cfg.json")
    md, html = (p.read_text() for p in generate_report(run_dir, "both"))
    assert [md, html] == old
    assert '<style>body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI"' in html  # CSS quotes kept
    assert '<link rel="stylesheet"' not in html and "<nav" not in html  # one standalone file
    (run_dir / "cfg.json").unlink()
    with pytest.raises(ArtifactError, match="no cfg.json"):
        generate_report(run_dir, "markdown")
