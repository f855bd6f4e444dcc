"""`saelab match` writes the artifact and prints the headline; a user mistake exits with code 2."""

from __future__ import annotations

import pytest

from ..conftest import run_cli
from .synthetic import build
from .workspaces import make_workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("ws"), build(),
                          {"narrow": ("narrow", "model.layers.1"), "wide": ("wide", "model.layers.1")})


def test_match_prints_the_headline_and_writes_the_artifact(ws, capsys):
    code = run_cli("match", "--a", "wide", "--b", "narrow", "-w", str(ws.root))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "6 of 12 narrow latents have a one-to-one partner in wide" in out
    assert "3 split into families" in out and "5 of 17 wide latents are novel" in out
    for name in ("matches.parquet", "latents.parquet", "families.json", "summary.md", "coverage.png", "cfg.json"):
        assert (ws.root / "match" / "wide__narrow" / name).exists()


def test_match_with_itself_or_an_unknown_dictionary_exits_2(ws, capsys):
    assert run_cli("match", "--a", "wide", "--b", "wide", "-w", str(ws.root)) == 2
    assert "same dictionary" in capsys.readouterr().err
    assert run_cli("match", "--a", "wide", "--b", "nope", "-w", str(ws.root)) == 2
    assert "dictionary: got 'nope'; expected one of: narrow, wide" in capsys.readouterr().err
    assert run_cli("match", "--a", "wide", "--b", "narrow", "--assignment", "greedy", "-w", str(ws.root)) == 2
    assert "MatchConfig.assignment" in capsys.readouterr().err
