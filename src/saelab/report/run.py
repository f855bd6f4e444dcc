"""The `report` stage: a workspace's artifacts → a static HTML site (DESIGN.md §1 "Show me").

On disk (`workspace/report/` by default): `index.html`; per dictionary `NAME/index.html`
(metrics, plots, the latent table from `data/NAME-latents.js`) and `NAME/latents/ID.html`;
`match/RUN.html`, `sfal/NAME.html`, `diff/RUN.html` (with `diff/RUN/layer_LL/latents/ID.html` for its
named latents) for the stages that ran; `static/`, `plots/`, and `cfg.json`. Works from file:// with no network.

The report renders no stale artifact: a latent store whose dictionary was trained again (or whose token windows
were rebuilt) since it was cached, or an interp run of a store rebuilt since, stops it with the commands that
rebuild them. cfg.json records the hashes of what each page was built from.

Memory: nothing here is d_a × d_b. Per dictionary, its latent table and frequencies (O(d_sae) rows) and its
coder (decoder directions of the pages); a match is read from latents.parquet (n_a + n_b rows). Measured peak
RSS on a workspace with a 131,072- and a 16,384-latent dictionary at d 2,304 and their match
(bench/scale.py): 3.02 GB, most of it the larger coder's 2.4 GB of fp32 weights (5.17 GB while
`SparseCoder.load` still held them twice).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .._io import CFG_NAME, read_json, write_cfg
from ..data.tokens import load_token_windows
from ..errors import ArtifactError, ConfigError
from ..latents.source import rebuild_command, store_problem
from ..latents.store import LatentStore
from ..lock import hold_directory
from ..render import Site
from ..workspace import Workspace
from . import sources
from .config import ReportConfig
from .diff_page import complete_runs, diff_pages
from .model_view import ModelView
from .pages import dictionary_pages, index_page, match_pages, sfal_pages
from .summary import SUMMARY_NAME, headline, write_summary
from .table import DictionaryData, partner_closure

log = logging.getLogger(__name__)


def chosen_interp_runs(ws: Workspace, names: tuple[str, ...]) -> dict[str, Path]:
    """{dictionary: run directory} of the interp runs asked for by name; two for one dictionary is an error."""
    from ..interp.load import find_run, run_dictionary

    chosen: dict[str, Path] = {}
    for name in names:
        run_dir = find_run(ws, None, name)
        assert run_dir is not None  # find_run raises for a named run that does not exist
        dictionary = run_dictionary(run_dir)
        if not dictionary:
            raise ArtifactError(f"interp_runs: {run_dir} has no run_config.json naming its dictionary.")
        if dictionary in chosen:
            raise ConfigError(f"interp_runs: {chosen[dictionary]} and {run_dir} are both runs of {dictionary!r}; "
                              "name one per dictionary.")
        chosen[dictionary] = run_dir
    return chosen


def gather(ws: Workspace, matches: list[sources.MatchRun],
           interp_runs: dict[str, Path] | None = None) -> list[DictionaryData]:
    """Every dictionary with a complete latent store, with what the other stages say about it."""
    out = []
    for d in sorted(p for p in (ws.root / "latents").glob("*") if (p / CFG_NAME).exists()):
        try:
            store = LatentStore(d)
        except ArtifactError as e:
            log.warning("skipped %s: %s", d.name, e)
            continue
        data = DictionaryData(d.name, store, sources.interp(ws, d.name, (interp_runs or {}).get(d.name)),
                              matches=[m for m in matches if d.name in (m.cfg.get("a"), m.cfg.get("b"))])
        sfal = sources.sfal(ws, d.name)
        if sfal and sfal["rows"]:
            data.sfal_rows = {int(r["latent"]): r for r in sfal["rows"]}
            data.ndcg_column = next((c for c in sfal["rows"][0] if c.startswith("ndcg[")), None)
        out.append(data)
    return out


def stale(ws: Workspace, dicts: list[DictionaryData]) -> list[str]:
    """What would show stale activations: stores cached from other weights or windows than the workspace holds
    now, interp runs of stores rebuilt since; each with the command that rebuilds it."""
    from ..interp.run import run_problem

    problems = []
    for d in dicts:
        if problem := store_problem(ws, d.name, d.store):
            problems.append(f"{problem}; rebuild it: {rebuild_command(ws, d.name, d.store.cfg)}")
        elif d.interp is not None and d.interp.path is not None and (problem := run_problem(d.interp.path, d.store)):
            model = (d.store.cfg.get("model") or {}).get("path") or "MODEL"
            named = f" --name {d.interp.path.name}" if d.interp.path.name != d.name else ""
            problems.append(f"{problem}; redo it: saelab autointerp {model} {d.name} -w {ws.root}{named} "
                            "--overwrite all (with its settings, see its run_config.json), or remove it")
    return problems


def built_from(windows_hash: str, dicts: list[DictionaryData]) -> dict[str, Any]:
    """The hashes of what the pages show, for cfg.json: token windows, each store, each interp run."""
    return {"tokens_hash": windows_hash,
            "stores": {d.name: {k: d.store.cfg.get(k) for k in ("dictionary_hash", "tokens_hash")} for d in dicts},
            "interp_runs": {d.name: str(d.interp.path) for d in dicts if d.interp is not None and d.interp.path}}


def run(config: ReportConfig, workspace: Workspace, out: str | Path | None = None,
        view: ModelView | None = None) -> Path:
    """Write the report site; return the path of its index.html.

    Args:
        config: what to show and how many latent pages per dictionary.
        workspace: the workspace whose artifacts are rendered (nothing is recomputed).
        out: output directory (default `workspace/report/`).
        view: token text and unembedding of the workspace's model (`ModelView.from_loaded(lm)`);
            without it tokens show as ids and pages have no logit effects.

    Example:
        >>> run(ReportConfig(max_latent_pages=200), Workspace.at("ws"), view=ModelView.from_loaded(lm))
    """
    out = Path(out) if out else workspace.report
    with workspace.lock("report") if out == workspace.report else hold_directory(out):
        return _run_locked(config, workspace, out, view)


def _run_locked(config: ReportConfig, workspace: Workspace, out: Path, view: ModelView | None) -> Path:
    t0 = time.perf_counter()
    view = view or ModelView.ids_only()
    windows = load_token_windows(workspace.tokens)
    matches = sources.matches(workspace)
    dicts = gather(workspace, matches, chosen_interp_runs(workspace, config.interp_runs))
    problems = stale(workspace, dicts)
    if problems:
        raise ArtifactError(f"report: {len(problems)} artifacts would show stale activations: " + " | ".join(problems))
    diff_runs = complete_runs(workspace.root)
    site = Site(out, {"workspace": str(workspace.root), "dictionaries": [d.name for d in dicts],
                      "match_names": [m.name for m in matches], "sfal_names": [d.name for d in dicts if d.sfal_rows],
                      "diff_names": [d.name for d in diff_runs]})
    site.copy_static()
    pages = partner_closure(dicts, config.max_latent_pages)
    evals = sources.evals(workspace)
    refs = headline(workspace, evals, matches, diff_runs)  # each headline number beside its reference point
    for data in dicts:
        dictionary_pages(site, data, workspace, windows.tokens, view, config, pages,
                         [r for r in refs if data.name in r.subjects])
    match_pages(site, matches, pages)
    sfal_pages(site, workspace, dicts, pages)
    diffs = diff_pages(site, diff_runs, windows.cfg, view, config)
    index = index_page(site, workspace, windows, dicts, evals, matches, diffs, view, pages, refs)
    write_summary(out, refs)
    write_cfg(out, {"artifact": "report", "workspace": str(workspace.root), "config": asdict(config),
                    "summary": SUMMARY_NAME,
                    "model_view": view.description, "n_pages": len(site.pages),
                    "latent_pages": {k: len(v) for k, v in pages.items()},
                    "built_from": built_from(windows.tokens_hash, dicts),
                    "seconds": round(time.perf_counter() - t0, 2)})
    log.info("report: %d pages in %.1f s → %s", len(site.pages), time.perf_counter() - t0, index)
    return index


def load_report_cfg(out: str | Path) -> dict[str, Any]:
    return read_json(Path(out) / CFG_NAME)
