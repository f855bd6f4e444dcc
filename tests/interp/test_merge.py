"""Merging interp runs over disjoint latents: one summary over the union, records untouched,
and runs that were not made the same way refused with the differing settings named."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from saelab.errors import ArtifactError, ConfigError
from saelab.interp import merge, run

from .conftest import PLANTED, RARE, ScriptedClient
from .test_run import EX, _cfg, _embed


def _run(planted, name, latents, **kw):
    ws, tok = planted
    return run(_cfg(latents=tuple(latents), **kw), ws, "synth", name=name, client=ScriptedClient(), tokenizer=tok,
               embed=_embed)


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def test_merged_summary_pools_the_latents_of_both_runs(planted):
    ws, _ = planted
    a = _run(planted, "a", [0, 1, 2])
    b = _run(planted, "b", [3, 4, 5, RARE])
    whole = _run(planted, "whole", range(len(PLANTED)))
    out = merge([a, b], ws.root / "interp" / "ab")
    s = _summary(out)
    assert s["latents"] == list(range(len(PLANTED))) and str(RARE) in s["skipped"]
    # explanation and top-tokens records are the ones a single run over all latents scores
    for scorer in ("detection", "fuzz", "embedding"):
        for variant in ("explanation", "top-tokens"):
            assert s["scores"][scorer][variant] == _summary(whole)["scores"][scorer][variant], (scorer, variant)
        assert s["scores"][scorer]["shuffled"]["n_latents"] == len(PLANTED)
    # each latent keeps the shuffled explanation its own run scored it with
    for latent, src in ((0, a), (4, b)):
        rel = f"scores/detection/shuffled/{latent}.json"
        assert (out / rel).read_text() == (src / rel).read_text()
    c = {(c["variant"], c["reference"]): c for c in s["comparisons"]["detection"]}["explanation", "shuffled"]
    assert c["n_latents"] == len(PLANTED) and c["difference"] > 0.2
    cfg = json.loads((out / "run_config.json").read_text())
    assert [m["latents"] for m in cfg["merged_from"]] == [[0, 1, 2], [3, 4, 5]]
    assert cfg["config"]["latents"] == list(range(len(PLANTED)))
    timings = s["timings"]
    assert timings["score/detection/explanation"]["n_latents"] == len(PLANTED)
    md = (out / "summary.md").read_text()
    assert "| detection | explanation | shuffled | auc | 6 |" in md
    assert f"- `{a}`: 3 latents: 0–2" in md and f"- `{b}`: 3 latents: 3–5" in md


def test_runs_made_differently_or_overlapping_are_refused(planted):
    ws, _ = planted
    a = _run(planted, "a", [0, 1, 2])
    fewer = _run(planted, "fewer", [3, 4], examples=replace(EX, n_examples_test=7))
    with pytest.raises(ConfigError, match=r"examples: .*'n_examples_test': 10.* vs .*'n_examples_test': 7"):
        merge([a, fewer], ws.root / "interp" / "x")
    other = _run(planted, "other", [3, 4], scorers=("detection",))
    with pytest.raises(ConfigError, match="scorers"):
        merge([a, other], ws.root / "interp" / "x")
    retrained = _run(planted, "retrained", [3, 4])  # the same dictionary name, other weights
    cfg = json.loads((retrained / "run_config.json").read_text())
    (retrained / "run_config.json").write_text(json.dumps({**cfg, "dictionary_hash": "0123456789abcdef"}))
    with pytest.raises(ConfigError, match="dictionary_hash: 'synthetic' vs '0123456789abcdef'"):
        merge([a, retrained], ws.root / "interp" / "x")
    overlap = _run(planted, "overlap", [2, 3])
    with pytest.raises(ConfigError, match="latent 2 is in both"):
        merge([a, overlap], ws.root / "interp" / "x")
    assert not (ws.root / "interp" / "x").exists() and not list((ws.root / "interp").glob(".x.*"))


def test_unfinished_runs_and_an_existing_target_are_refused(planted):
    ws, _ = planted
    a = _run(planted, "a", [0, 1, 2])
    b = _run(planted, "b", [3, 4])
    (b / "summary.json").unlink()
    with pytest.raises(ArtifactError, match="unfinished"):
        merge([a, b], ws.root / "interp" / "ab")
    b = _run(planted, "b", [3, 4])  # a rerun writes the summary again, scoring nothing
    merge([a, b], ws.root / "interp" / "ab")
    with pytest.raises(ArtifactError, match="--overwrite"):
        merge([a, b], ws.root / "interp" / "ab")
    merge([a, b], ws.root / "interp" / "ab", overwrite=True)
    with pytest.raises(ConfigError, match="at least two"):
        merge([a], ws.root / "interp" / "ab2")


def test_cli_merges_runs_by_name(planted, capsys):
    from ..conftest import run_cli

    ws, _ = planted
    _run(planted, "a", [0, 1, 2])
    _run(planted, "b", [3, 4, 5])
    assert run_cli("autointerp-merge", "a", "b", "--name", "ab", "-w", str(ws.root)) == 0
    assert "Auto-interpretation: 6 latents" in capsys.readouterr().out
    assert _summary(ws.root / "interp" / "ab")["latents"] == list(range(len(PLANTED)))
    assert run_cli("autointerp-merge", "a", "nope", "--name", "ab2", "-w", str(ws.root)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no interp run at nope" in err and "Traceback" not in err


def test_one_run_given_twice_is_refused(planted):
    """Its latents overlap entirely, though one run has no latent twice: refused like any overlap."""
    ws, _ = planted
    a = _run(planted, "a", [0, 1, 2])
    with pytest.raises(ConfigError, match="is given more than once"):
        merge([a, a], ws.root / "interp" / "aa")
    with pytest.raises(ConfigError, match=r"given more than once \(as"):
        merge([a, a.parent / ".." / a.parent.name / a.name], ws.root / "interp" / "aa")
    assert not (ws.root / "interp" / "aa").exists()
