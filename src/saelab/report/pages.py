"""One function per kind of page: gather its context, render its template (diff pages: `diff_page`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import CFG_NAME
from ..data.tokens import TokenWindows
from ..workspace import Workspace
from . import plots, sources
from .config import ReportConfig
from .latent_page import Directions, page_context, precompute
from .model_view import ModelView
from .references import Reference
from .table import DictionaryData, table_json

log = logging.getLogger(__name__)
SECTIONS = ("reconstruction", "sparsity", "downstream", "absorption")


def _dictionary(ws: Workspace, name: str) -> Any:
    """The store's dictionary: the workspace's own, or the path / Hub repo its store records; None if unavailable."""
    from ..errors import SaelabError
    from ..latents.source import has_dictionary, load_store_dictionary

    if not has_dictionary(ws, name):
        return None
    try:
        return load_store_dictionary(ws, name)
    except SaelabError as e:  # e.g. offline and the Hub copy is gone: the pages go without decoder directions
        log.warning("report: the dictionary of %s is not available (%s); no decoder directions on its pages", name, e)
        return None


def _directions(coder: Any) -> Directions | None:
    if coder is None:
        return None
    w_dec = coder.W_dec
    return Directions.of(w_dec) if w_dec.dim() == 2 else None  # crosscoders: one decoder per source


def _metrics(evals: list[tuple[str, dict[str, Any]]], name: str) -> list[dict[str, Any]]:
    """Scalar metrics of `name` from every eval run: [{"run", "rows": [(section, key, value)]}]."""
    out = []
    for run, e in evals:
        m = e["metrics"].get(name)
        if m is None:
            continue
        rows = [(s, k, v) for s in SECTIONS for k, v in m.get(s, {}).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)]
        comparison = e["comparison"] if e["comparison"] and name in (e["comparison"]["a"], e["comparison"]["b"]) \
            else None
        out.append({"run": run, "rows": rows, "comparison": comparison})
    return out


def dictionary_pages(site: Any, data: DictionaryData, ws: Workspace, tokens: torch.Tensor, view: ModelView,
                     config: ReportConfig, pages: dict[str, set[int]], refs: list[Reference]) -> None:
    """The dictionary page (opening with its headline numbers beside their reference points, `refs`), its table
    data, its plots and its latent pages."""
    name, store = data.name, data.store
    mine = sorted(pages[name])
    coder = _dictionary(ws, name)
    directions = _directions(coder)
    dict_cfg = sources.json_or_none(ws.dictionary(name) / CFG_NAME)
    if dict_cfg is None and coder is not None:
        dict_cfg = {**coder.cfg.to_dict(), "source": getattr(coder, "source", None)}
    site.script_data(f"data/{name}-latents.js", "SAELAB_TABLE", table_json(data, pages))
    freq_plot = plots.frequency_histogram(store.frequencies().per_token, name,
                                          site.out / "plots" / f"{name}-frequency.svg")
    evals = sources.evals(ws)
    site.page("dictionary.html.jinja", f"{name}/index.html", name=name, store=store.summary(),
              dict_cfg=dict_cfg, metrics=_metrics(evals, name),
              fvu_plot=_fvu_plot(site, evals), freq_plot=freq_plot.name, n_pages=len(mine),
              interp=data.interp, sfal=bool(data.sfal_rows), refs=refs)
    for stale in (site.out / name / "latents").glob("*.html"):  # pages of an earlier report, not linked now
        if not stale.stem.isdigit() or int(stale.stem) not in pages[name]:
            stale.unlink()
    pre = precompute(mine, directions, view, config)
    logits_note = ("Decoder width differs from the model's: no logit effects." if view.unembedding is not None
                   else "Not computed: the report was written without the model.")
    cooc = sources.cooc_neighbours(ws, name)
    for latent in mine:
        ctx = page_context(data, latent, tokens, view, config, pre[latent], cooc)
        site.page("latent.html.jinja", f"{name}/latents/{latent}.html", name=name, d=ctx, pages=pages,
                  parent={"href": "../index.html", "label": name}, facts=[], logits_note=logits_note)


def _fvu_plot(site: Any, evals: list[tuple[str, dict[str, Any]]]) -> str | None:
    metrics = {name: m for _, e in evals for name, m in e["metrics"].items()}
    if not metrics:
        return None
    path = site.out / "plots" / "fvu-l0.svg"
    if not path.exists():
        from ..evals.plots import fvu_vs_l0

        fvu_vs_l0(metrics, path)
    return path.name


def match_pages(site: Any, matches: list[sources.MatchRun], pages: dict[str, set[int]]) -> None:
    for m in matches:
        plot = plots.coverage_curve(m.cfg, site.out / "plots" / f"match-{m.name}.svg")
        narrow = m.families.get("narrow")
        wide = m.other(narrow) if narrow else None
        site.page("match.html.jinja", f"match/{m.name}.html", m=m, cfg=m.cfg, plot=plot.name,
                  families=m.families.get("families", []), narrow=narrow, wide=wide,
                  summary=(m.path / "summary.md").read_text(encoding="utf-8") if (m.path / "summary.md").exists()
                  else None, pages=pages)


def sfal_pages(site: Any, ws: Workspace, dicts: list[DictionaryData], pages: dict[str, set[int]]) -> None:
    for data in dicts:
        s = sources.sfal(ws, data.name)
        if not s or not data.ndcg_column:
            continue
        model = data.ndcg_column[len("ndcg["):-1]
        ndcg = np.array([float(r[data.ndcg_column]) for r in s["rows"]])
        base_col = f"ndcg_baseline[{model}]"
        base = np.array([float(r[base_col]) for r in s["rows"] if r.get(base_col) not in (None, "")])
        plot = plots.ndcg_distribution(ndcg, base, model, site.out / "plots" / f"sfal-{data.name}.svg")
        best = sorted(s["rows"], key=lambda r: -float(r[data.ndcg_column]))[:20]
        site.page("sfal.html.jinja", f"sfal/{data.name}.html", name=data.name, s=s, plot=plot.name, model=model,
                  column=data.ndcg_column, best=best, cooc=sources.cooc_cfg(ws, data.name), pages=pages)


def index_page(site: Any, ws: Workspace, windows: TokenWindows, dicts: list[DictionaryData],
               evals: list[tuple[str, dict[str, Any]]], matches: list[sources.MatchRun],
               diffs: list[dict[str, Any]], view: ModelView, pages: dict[str, set[int]],
               refs: list[Reference]) -> Path:
    cards = []
    for data in dicts:
        dcfg = sources.json_or_none(ws.dictionary(data.name) / CFG_NAME) or {}
        cards.append({"name": data.name, "store": data.store.summary(), "architecture": dcfg.get("architecture"),
                      "k": dcfg.get("k"), "n_pages": len(pages[data.name]), "interp": _interp_card(data),
                      "cooc": sources.cooc_cfg(ws, data.name), "sfal": _sfal_card(ws, data.name),
                      "best_sort": (data.interp and next(iter(data.interp.scorers), None)) or
                      ("ndcg" if data.sfal_rows else "frequency")})
    return site.page("index.html.jinja", "index.html", tokens=windows.cfg, view=view.description, cards=cards,
                     evals=evals, matches=matches, diffs=diffs, refs=refs)


def _interp_card(data: DictionaryData) -> dict[str, Any] | None:
    if data.interp is None:
        return None
    pooled = {}
    for scorer, by_variant in (data.interp.summary or {}).get("scores", {}).items():
        for variant, t in by_variant.items():
            m = t.get("pooled", {})
            pooled[f"{scorer} · {variant}"] = (m.get("auc"), m.get("balanced_accuracy"), t.get("n_latents"),
                                               m.get("n_failed"))
    aside = data.interp.set_aside
    return {"explainer": data.interp.explainer, "n_explained": len(data.interp.explanations),
            "n_failed": len(data.interp.failed), "pooled": pooled, "at_chance": data.interp.at_chance,
            "set_aside": None if aside is None else {"explainer": aside.explainer, "n": len(aside.explanations),
                                                     "n_failed": len(aside.failed)}}


def _sfal_card(ws: Workspace, name: str) -> dict[str, Any] | None:
    s = sources.sfal(ws, name)
    if s is None:
        return None
    return {"aggregates": s["summary"].get("aggregates", {})}
