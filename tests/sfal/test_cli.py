"""`saelab cooc`, `saelab embed`, `saelab sfal` end to end, and their one-line user errors."""

from __future__ import annotations

import importlib

from saelab.cooc import load_cooc

from ..conftest import run_cli
from .test_sfal import FakeEmbedder, _grouped_workspace


def test_cooc_embed_sfal_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(importlib.import_module("saelab.sfal.run"), "Embedder", FakeEmbedder)
    ws, d = _grouped_workspace(tmp_path)
    w = str(ws.root)
    assert run_cli("cooc", "-w", w, "--layers", "3") == 2  # the synthetic store is at model.layers.6
    assert run_cli("cooc", "-w", w, "--layers", "6", "--k", "8", "--partial", "keep", "--top-k", "4") == 0
    assert load_cooc(ws.root / "cooc" / "synth").cfg["config"]["partial"] == "keep"
    assert run_cli("embed", "-w", w, "-d", "synth", "-e", "top-tokens", "--embeddings", "fake") == 0
    out = tmp_path / "scores.csv"
    assert run_cli("sfal", "-w", w, "-d", "synth", "-e", "top-tokens", "--embeddings", "fake", "--top_n", "12",
                   "--output", str(out)) == 0
    printed = capsys.readouterr().out
    assert "top-token description (no LLM)" in printed and "baseline" in printed
    assert out.read_text(encoding="utf-8").startswith("latent,explanation_kind,explanation,window_count,ndcg[fake]")


def test_user_errors_are_one_line(tmp_path, capsys):
    ws, d = _grouped_workspace(tmp_path)
    assert run_cli("cooc", "-w", str(ws.root), "-d", "synth", "--k", "64") == 2  # documents have 16 tokens
    assert "longest document has 16 tokens" in capsys.readouterr().err
    assert run_cli("cooc", "-w", str(ws.root), "-d", "synth", "--window", "diagonal") == 2
    assert "window: got 'diagonal'" in capsys.readouterr().err
    assert run_cli("sfal", "-w", str(ws.root), "-d", "synth", "-e", "top-tokens") == 2
    assert "run `saelab cooc` first" in capsys.readouterr().err
