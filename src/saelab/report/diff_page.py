"""The diff pages of the workspace report: one page per diff run (`diff/RUN.html`, the body of the run's
own report.html, with its plots redrawn as SVG) and a latent page per named crosscoder latent
(`diff/RUN/layer_LL/latents/ID.html`, from the run's latent store over its paired windows).

The crosscoder reads two models, so its latent pages have no decoder neighbours or logit effects.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .._io import CFG_NAME, read_json
from ..data.tokens import load_token_windows
from ..diff.load import find_diff_runs, layer_dir, read_run_config, windows_dir
from ..diff.plots import draw_run
from ..diff.report import report_context
from ..errors import ArtifactError
from ..latents.store import LatentStore
from .config import ReportConfig
from .latent_page import page_context
from .model_view import ModelView
from .sources import InterpRun
from .table import DictionaryData

log = logging.getLogger(__name__)
NO_LOGITS = "Not computed for a crosscoder of two models (one decoder per model)."


def diff_pages(site: Any, runs: list[Path], tokens_cfg: dict[str, Any], view: ModelView,
               config: ReportConfig) -> list[dict[str, Any]]:
    """Write the page of each diff run and the latent pages of its named latents; return the front page's cards.

    Args:
        runs: diff run directories with a latent table per layer (`complete_runs`).
        tokens_cfg: cfg.json of the workspace's token windows (its tokenizer decides whether `view` can
            show the diff's tokens; else they show as ids).
    """
    cards = []
    for run_dir in runs:
        name = run_dir.name
        ctx = report_context(run_dir)
        plots = draw_run(run_dir, site.out / "plots", prefix=f"diff-{name}-", suffix=".svg")
        links = _latent_pages(site, run_dir, ctx, _view_of(run_dir, tokens_cfg, view), config)
        site.page("diff.html.jinja", f"diff/{name}.html", name=name, path=str(run_dir), **ctx,
                  plots={k: f"../plots/{quote(p.name)}" for k, p in plots.items()}, latent_links=links)
        cards.append({"name": name, "headline": ctx["overview"][0], "layers": [v["layer"] for v in ctx["layers"]],
                      "n_named": sum(len(v["named_rows"]) for v in ctx["layers"]), "n_latent_pages": len(links)})
    return cards


def complete_runs(root: Path) -> list[Path]:
    """The diff runs of the workspace at `root` that have a latent table at every layer (others are logged)."""
    out = []
    for run_dir in find_diff_runs(root):
        missing = [f"features/layer_{layer:02d}/latent_table.json" for layer in read_run_config(run_dir)["layers"]
                   if not (layer_dir(run_dir, layer) / "latent_table.json").exists()]
        if missing:
            log.warning("report: skipped the diff run %s: no %s (an unfinished run?)", run_dir, ", ".join(missing))
        else:
            out.append(run_dir)
    return out


def _view_of(run_dir: Path, tokens_cfg: dict[str, Any], view: ModelView) -> ModelView:
    """`view` when the diff's windows were cut by the workspace's tokenizer, else token ids."""
    path = windows_dir(run_dir) / CFG_NAME
    theirs = read_json(path).get("tokenizer") if path.exists() else None
    if theirs and theirs == tokens_cfg.get("tokenizer"):
        return view
    return ModelView.ids_only(f"tokenizer {theirs or 'unknown'} is not the workspace's: tokens shown as ids")


def _latent_pages(site: Any, run_dir: Path, ctx: dict[str, Any], view: ModelView,
                  config: ReportConfig) -> dict[str, str]:
    """Latent pages of the named latents of each layer; {"LAYER-LATENT": url relative to the run's page}."""
    name, links = run_dir.name, {}
    windows = None
    for v in ctx["layers"]:
        latents = [r["latent"] for r in v["named_rows"]][:config.max_latent_pages]
        rel = f"{name}/layer_{v['layer']:02d}/latents"
        for stale in (site.out / "diff" / rel).glob("*.html"):  # pages of an earlier report, not linked now
            if not stale.stem.isdigit() or int(stale.stem) not in latents:
                stale.unlink()
        try:
            store = LatentStore(layer_dir(run_dir, v["layer"]) / "latents")
            if windows is None:
                windows = load_token_windows(windows_dir(run_dir))
        except ArtifactError as e:
            log.warning("report: no latent pages for layer %d of the diff run %s: %s", v["layer"], run_dir, e)
            continue
        if store.tokens_hash != windows.tokens_hash:
            log.warning("report: the latent store of layer %d of %s indexes other windows than %s; no latent pages",
                        v["layer"], run_dir, windows_dir(run_dir))
            continue
        label = f"{name} · layer {v['layer']}"
        data = DictionaryData(label, store, interp=_named(v["named"]))
        rows = {r["latent"]: r for r in v["named_rows"]}
        parent = {"href": f"../../../{quote(name)}.html#named-{v['layer']}",
                  "label": f"diff {name}, layer {v['layer']}"}
        for latent in latents:
            d = page_context(data, latent, windows.tokens, view, config, {}, None)
            site.page("latent.html.jinja", f"diff/{rel}/{latent}.html", name=label, d=d, pages={label: set(latents)},
                      parent=parent, facts=_facts(rows[latent]), logits_note=NO_LOGITS)
            links[f"{v['layer']}-{latent}"] = f"{quote(rel)}/{latent}.html"
    return links


def _named(named: dict[str, Any] | None) -> InterpRun | None:
    """The diff's names and detection F1s in the report's interp shape (explanation, failure, scores)."""
    if named is None:
        return None
    run = InterpRun(named["explainer"], {}, {})
    for n in named.get("latents", []):
        latent = int(n["latent"])
        if n.get("explanation"):
            run.explanations[latent] = str(n["explanation"])
        else:
            run.failed[latent] = str(n.get("reason") or "no explanation")
        for scorer, key in (("detection F1", "detection"), ("shuffled F1", "shuffled_detection")):
            f1 = (n.get(key) or {}).get("f1")
            if f1 is not None:
                run.scores.setdefault(scorer, {})[latent] = float(f1)
    return run


def _facts(row: dict[str, Any]) -> list[tuple[str, Any]]:
    """What the diff measured about a latent (its latent-table row), shown under the page's title."""
    facts = [("named as", row.get("group")), ("tag", row.get("tag")), ("Δnorm", row.get("delta_norm")),
             ("decoder cosine", row.get("decoder_cosine")), ("firings", row.get("count"))]
    return [(k, v) for k, v in facts if v is not None]
