"""The workspace's headline numbers, each beside its reference point (`references`): what the report's front
page opens with, what `report/summary.md` holds, and what `saelab demo` prints last.

Read from the artifacts on disk only (DESIGN.md §3): evals/ (FVU, and a dense PCA baseline at the same L0 where
one was evaluated on the same tokens), interp/ (each run's explanation set against shuffled, top tokens and the
random-model control), match/, sfal/ and diff/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._io import CFG_NAME, read_json, write_text
from ..workspace import Workspace
from . import sources
from .references import Reference, fvu_reference, interp_references, match_reference, sfal_references, tail_reference

SUMMARY_NAME = "summary.md"


def _same_tokens(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("tokens_hash") == b.get("tokens_hash") and a.get("windows") == b.get("windows")


def _l0(m: dict[str, Any]) -> float | None:
    l0 = (m.get("sparsity") or {}).get("l0")
    return float(l0) if isinstance(l0, (int, float)) else m["dictionary"].get("k")


def pca_baseline(m: dict[str, Any], dense: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The dense PCA evaluation (metrics.json) with K = round(L0 of `m`) on the same tokens as `m`, if any."""
    l0 = _l0(m)
    return next((p for p in dense if l0 is not None and p["dictionary"].get("k") == max(1, round(l0))
                 and _same_tokens(p, m)), None)


def fvu_references(evals: list[tuple[str, dict[str, Any]]]) -> list[Reference]:
    """One FVU per evaluated dictionary beside its PCA baseline (the evaluation that has one, where any does)."""
    every = [m for _, e in evals for m in e["metrics"].values() if (m.get("reconstruction") or {}).get("fvu")
             is not None]
    dense = [m for m in every if m["dictionary"].get("kind") == "dense" and m["dictionary"].get("method") == "pca"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for m in every:
        if m["dictionary"].get("kind") != "dense":
            by_name.setdefault(m["dictionary"]["name"], []).append(m)
    out = []
    for name, ms in by_name.items():
        pairs = [(m, pca_baseline(m, dense)) for m in ms]
        m, pca = next(((m, p) for m, p in pairs if p is not None), pairs[0])
        out.append(fvu_reference(name, m, pca))
    return out


def interp_run_references(ws: Workspace) -> list[Reference]:
    """Every interp run of the workspace with a summary: its explanation set against its reference points."""
    from ..interp import load

    out = []
    for d in sorted(p for p in (ws.root / "interp").glob("*") if (p / "summary.json").exists()):
        summary = read_json(d / "summary.json")
        name = load.run_dictionary(d) or d.name
        label = name if d.name == name else f"{name} (run {d.name})"
        out += interp_references(name, summary, sources.explained_by(d), sources.interp_control(d), label)
    return out


def diff_references(runs: list[Path]) -> list[Reference]:
    """The most target- and base-leaning latents of each diff run's layers beside the all-latent rate."""
    from ..diff.load import layer_dir, read_run_config
    from ..diff.sentences import leaning_tail

    out = []
    for run_dir in runs:
        for layer in read_run_config(run_dir)["layers"]:
            table = read_json(layer_dir(run_dir, layer) / "latent_table.json")
            out += [tail_reference(run_dir.name, layer, t) for side in ("target", "base")
                    if (t := leaning_tail(table, side)) is not None]
    return out


def headline(ws: Workspace, evals: list[tuple[str, dict[str, Any]]] | None = None,
             matches: list[sources.MatchRun] | None = None, diff_runs: list[Path] | None = None) -> list[Reference]:
    """Every headline number of the workspace beside its reference point, stage by stage (the stages that ran).

    Example:
        >>> for r in headline(Workspace.at("saelab-workspace")): print(r.line)
        FVU of full 0.115 vs 0.402 for PCA with 32 directions (dense, the same L0) on the same 32,543 held-out tokens.
    """
    from .diff_page import complete_runs

    refs = fvu_references(sources.evals(ws) if evals is None else evals)
    refs += interp_run_references(ws)
    refs += [r for m in (sources.matches(ws) if matches is None else matches) if (r := match_reference(m.cfg))]
    for d in sorted(p for p in (ws.root / "sfal").glob("*") if (p / "summary.json").exists()):
        kind = ((sources.json_or_none(d / CFG_NAME) or {}).get("explanations") or {}).get("kind")
        refs += sfal_references(d.name, read_json(d / "summary.json").get("aggregates") or {}, kind)
    return refs + diff_references(complete_runs(ws.root) if diff_runs is None else diff_runs)


def markdown(refs: list[Reference]) -> str:
    """summary.md: one bullet per number; a number at its reference says so in its own sentence."""
    lines = ["# Headline numbers beside their reference points", "",
             "Each number with what it is measured against; where a number is at its reference, the line says so "
             "(the rule per metric: `saelab.report.references`).", ""]
    lines += [f"- {r.line}" for r in refs] or ["- No stage with a headline number has run."]
    return "\n".join(lines) + "\n"


def write_summary(out: Path, refs: list[Reference]) -> Path:
    path = out / SUMMARY_NAME
    write_text(path, markdown(refs))
    return path
