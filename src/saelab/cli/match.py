"""`saelab match`: all-pairs matching of two dictionaries of a workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import common as opt


def register(app: typer.Typer) -> None:
    @app.command("match")
    def match(a: str = typer.Option(..., "--a", help="First dictionary (a name in the workspace), e.g. ultra."),
              b: str = typer.Option(..., "--b", help="Second dictionary, e.g. full."),
              threshold: float = typer.Option(0.7, "--threshold", help="'Same latent' at decoder cosine (or activation r) ≥ this."),
              novel: float = typer.Option(0.4, "--novel-threshold", help="A wide latent whose best score is below this is novel."),
              assignment: str = typer.Option("hungarian", "--assignment", help="One-to-one assignment: hungarian | sinkhorn."),
              seed: int = typer.Option(0, "--seed", help="Seed of the random baseline."),
              workspace: Optional[str] = opt.WorkspaceOpt,
              out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: workspace/match/A__B).")) -> None:
        """Which latent of A is which latent of B? One-to-one and many-to-one matches, families of split
        latents, unique and novel latents, the coverage curve against a random baseline."""
        from ..match import MatchConfig, run
        from ..workspace import Workspace
        from .._io import read_json
        from . import console

        config = MatchConfig(same_threshold=threshold, novel_threshold=novel, assignment=assignment, seed=seed)  # type: ignore[arg-type]
        path = run(config, Workspace.at(workspace), a, b, out_dir=out)
        cfg = read_json(path / "cfg.json")
        console.print(f"[bold]{cfg['headline']['text']}[/]", highlight=False)
        console.print(f"signals: {', '.join(cfg['signals_used'])}" +
                      "".join(f"\n  not used: {k} — {v}" for k, v in cfg["signals_not_used"].items()), highlight=False)
        console.print(f"baseline: {cfg['baseline']}; chance level {cfg['chance']:.3f}, match threshold "
                      f"{cfg['match_threshold']:.3f}; {cfg['timings_s']['total']:.1f} s", highlight=False)
        console.print(f"written: {path}/matches.parquet, latents.parquet, families.json, summary.md, coverage.png",
                      highlight=False)
