"""`saelab match`: all-pairs matching of two dictionaries of a workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import common as opt


def register(app: typer.Typer) -> None:
    @app.command("match")
    def match(a: str = typer.Option(..., "--a", help="First dictionary, e.g. ultra: a name in the workspace, or the "
                                    "path / Hub repo / saelens: spec a store was cached from "
                                    "(`saelab cache -d SPEC`)."),
              b: str = typer.Option(..., "--b", help="Second dictionary, e.g. full (same forms)."),
              threshold: float = typer.Option(0.7, "--threshold",
                                              help="'Same latent' at decoder cosine (or activation r) ≥ this."),
              novel: float = typer.Option(0.4, "--novel-threshold",
                                          help="A wide latent whose best score is below this is novel."),
              assignment: str = typer.Option("hungarian", "--assignment",
                                             help="One-to-one assignment: hungarian | sinkhorn."),
              seed: int = typer.Option(0, "--seed", help="Seed of the random baseline."),
              workspace: Optional[str] = opt.WorkspaceOpt,
              out: Optional[Path] = typer.Option(None, "--out",
                                                 help="Output directory (default: workspace/match/A__B)."),
              hookpoint: Optional[str] = opt.SelHookpoint, layer: Optional[int] = opt.SelLayer,
              width: Optional[str] = opt.SelWidth, l0: Optional[str] = opt.SelL0,
              site: Optional[str] = opt.SelSite, cache_dir: Optional[str] = opt.HubCacheDir,
              overwrite: bool = opt.recompute_option("a match", "weights, stores and settings")) -> None:
        """Which latent of A is which latent of B? One-to-one and many-to-one matches, families of split
        latents, unique and novel latents, the coverage curve against a random baseline."""
        from .._io import read_json
        from ..match import MatchConfig, run
        from ..workspace import Workspace
        from . import console

        config = MatchConfig(same_threshold=threshold, novel_threshold=novel, assignment=assignment, seed=seed)  # type: ignore[arg-type]
        ws = Workspace.at(workspace)
        sel = opt.selector(hookpoint, layer, width, l0, site)
        path = run(config, ws, opt.store_name(ws, a, sel), opt.store_name(ws, b, sel), out_dir=out,
                   resume=not overwrite)
        cfg = read_json(path / "cfg.json")
        console.print(f"[bold]{cfg['headline']['text']}[/]", highlight=False)
        console.print(f"signals: {', '.join(cfg['signals_used'])}" +
                      "".join(f"\n  not used: {k} — {v}" for k, v in cfg["signals_not_used"].items()), highlight=False)
        console.print(f"baseline: {cfg['baseline']}; chance level {cfg['chance']:.3f}, match threshold "
                      f"{cfg['match_threshold']:.3f}; {cfg['timings_s']['total']:.1f} s", highlight=False)
        console.print(f"written: {path}/matches.parquet, latents.parquet, families.json, summary.md, coverage.png",
                      highlight=False)
