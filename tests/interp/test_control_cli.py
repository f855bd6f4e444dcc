"""`saelab autointerp --control RUN` and `saelab autointerp-compare RUN CONTROL` on planted workspaces with the
no-LLM top-tokens explainer: the comparison is written into the run, a finished run is only compared again, and
a bad control is one line naming --control."""

from __future__ import annotations

import importlib
import json

import pytest

from ..conftest import run_cli
from .conftest import planted_for_cli
from .test_cli import _BagOfWords

SMALL = ("--explainer", "top-tokens", "--scorers", "embedding", "--min-examples", "5", "--example-ctx-len", "8",
         "--n-examples-train", "5", "--n-examples-test", "5", "--n-non-activating", "5")


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """(real workspace, control run directory, the control's model): the control is a finished run on a store
    whose model is `random:TOK@0` (the planted stores are the same: the gap is 0)."""
    monkeypatch.setattr("saelab.models.embed.Embedder", _BagOfWords)

    def no_llm(config):
        raise AssertionError("a top-tokens run asked for an LLM")

    monkeypatch.setattr(importlib.import_module("saelab.interp.run"), "make_client", no_llm)
    real = planted_for_cli(tmp_path / "real")
    ctl = planted_for_cli(tmp_path / "ctl")
    cfg_path = ctl.latents("synth") / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    model = f"random:{cfg['model']['path']}@0"
    cfg["model"]["path"] = model
    cfg_path.write_text(json.dumps(cfg))
    assert run_cli("autointerp", model, "synth", "-w", ctl.root, *SMALL, "--name", "ctl") == 0
    return real, ctl.interp("ctl"), model


def _files(run):
    return {p: p.stat().st_mtime_ns for p in [*run.glob("explanations/*/*.json"), *run.glob("scores/*/*/*.json")]}


def test_control_is_compared_and_recorded_and_a_rerun_only_compares(runs, tmp_path, capsys):
    real, control, model = runs
    tok = tmp_path / "real" / "tok"
    capsys.readouterr()
    assert run_cli("autointerp", tok, "synth", "-w", real.root, *SMALL, "--control", control) == 0
    assert "## Against the random-model control" in capsys.readouterr().out  # the console wraps the rest
    run = real.interp("synth")
    md = (run / "summary.md").read_text()
    assert "Embedding AUC (top-tokens)" in md and "on the random-model control: gap +0.000" in md
    assert "too few latents for a verdict" in md and "two-sample bootstrap" in md
    cfg = json.loads((run / "run_config.json").read_text())
    assert cfg["control"] == {"run": str(control.resolve()), "model": model}
    c = json.loads((run / "control.json").read_text())
    assert c["comparisons"]["embedding"][0]["variant"] == "top-tokens" and c["model"] == str(tok)
    assert json.loads((run / "summary.json").read_text())["control"] == c
    before = _files(run)
    assert run_cli("autointerp", tok, "synth", "-w", real.root, *SMALL, "--control", control) == 0
    assert _files(run) == before  # nothing explained or scored again
    assert (run / "summary.md").read_text().count("## Against the random-model control") == 1


def test_compare_command_takes_names_or_directories(runs, tmp_path, capsys):
    real, control, _ = runs
    assert run_cli("autointerp", tmp_path / "real" / "tok", "synth", "-w", real.root, *SMALL) == 0
    assert not (real.interp("synth") / "control.json").exists()
    capsys.readouterr()
    assert run_cli("autointerp-compare", "synth", control, "-w", real.root) == 0
    assert "## Against the random-model control" in capsys.readouterr().out
    assert (real.interp("synth") / "control.json").exists()
    assert run_cli("autointerp-compare", "synth", tmp_path / "nope", "-w", real.root) == 2
    assert "CONTROL: got" in capsys.readouterr().err


def test_settings_that_differ_are_said(runs, tmp_path, capsys):
    real, control, _ = runs
    other = list(SMALL)
    other[other.index("--n-examples-test") + 1] = "4"
    capsys.readouterr()
    assert run_cli("autointerp", tmp_path / "real" / "tok", "synth", "-w", real.root, *other, "--control",
                   control) == 0
    md = (real.interp("synth") / "summary.md").read_text()
    assert "the runs were made with other settings (examples.n_examples_test: 4 vs 5)" in md


@pytest.mark.parametrize("control, scorers, needle", [
    ("nope", "embedding", "--control: got 'nope', but there is no interp run at"),
    (None, "detection", "--control: the control run was scored with embedding scorers and this run with detection"),
])
def test_a_bad_control_is_one_line_naming_control(runs, tmp_path, capsys, control, scorers, needle):
    real, control_dir, _ = runs
    args = list(SMALL)
    args[args.index("--scorers") + 1] = scorers
    capsys.readouterr()
    assert run_cli("autointerp", tmp_path / "real" / "tok", "synth", "-w", real.root, *args, "--control",
                   control or control_dir) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not real.interp("synth").exists()  # refused before any work
