"""`saelab synth`, `saelab train --synthetic` and `saelab eval --ground-truth`, end to end through the CLI."""

from __future__ import annotations

import json

from saelab._io import read_json

from ..conftest import run_cli


def _world(tmp_path, capsys):
    world = tmp_path / "world"
    assert run_cli("synth", world, "--features", 128, "--hidden-dim", 32, "--seed", 5) == 0
    assert "true L0" in capsys.readouterr().out
    return world


def test_synth_train_and_ground_truth_eval(tmp_path, capsys):
    world = _world(tmp_path, capsys)
    ws = tmp_path / "ws"
    assert run_cli("train", "--synthetic", world, "--d-sae", 256, "-k", 4, "--n-tokens", 51_200, "--batch-size", 256,
                   "--name", "gt", "-w", ws) == 0
    out = capsys.readouterr().out
    assert "held-out FVU" in out
    cfg = read_json(ws / "dictionaries" / "gt" / "cfg.json")
    assert cfg["hookpoint"] == "synthetic" and cfg["extra"]["training"]["synthetic_hash"]
    assert run_cli("eval", "--dict", "gt", "--ground-truth", world, "--samples", 8192, "-w", ws) == 0
    out = capsys.readouterr().out
    assert "MCC" in out and "|cos| ≥ 0.9" in out
    metrics = json.loads((ws / "evals" / "gt-ground-truth" / "metrics.json").read_text())
    assert metrics["saelab"]["n_samples"] == 8192
    assert 0 < metrics["mcc"] <= 1
    # the same evaluation again is read back, not recomputed
    assert run_cli("eval", "--dict", "gt", "--ground-truth", world, "--samples", 8192, "-w", ws) == 0
    assert "holds this evaluation already" in capsys.readouterr().out


def test_bad_input_is_named(tmp_path, capsys):
    world = _world(tmp_path, capsys)
    ws = tmp_path / "ws"
    assert run_cli("synth", world, "--features", 64) == 2  # exists already
    assert "--overwrite" in capsys.readouterr().err
    assert run_cli("synth", tmp_path / "w2", "--preset", "nope") == 2
    assert "--preset" in capsys.readouterr().err
    assert run_cli("train", "--synthetic", tmp_path / "missing", "--d-sae", 64, "-w", ws) == 2
    assert "missing" in capsys.readouterr().err
    assert run_cli("train", "--synthetic", world, "--d-sae", 64, "--epochs", 2, "-w", ws) == 2
    assert "epochs" in capsys.readouterr().err
