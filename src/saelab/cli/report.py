"""`saelab report`: render a workspace's artifacts as a static HTML site."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(workspace: Optional[str] = typer.Argument(None, help="Workspace directory (default: $SAELAB_WORKSPACE "
                                                                     "or ./saelab-workspace)."),
               out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: workspace/report)."),
               max_latent_pages: int = typer.Option(500, "--max-latent-pages",
                                                    help="Latent pages per dictionary (explained latents first); "
                                                         "~30 ms each."),
               model: Optional[str] = typer.Option(None, "--model",
                                                   help="Model for token text and logit effects (default: the "
                                                        "workspace's; 'none': tokenizer only, no logit effects)."),
               n_examples: int = typer.Option(10, "--n-examples", help="Top-activating examples per latent page."),
               interp_run: list[str] = typer.Option([], "--interp-run", help="Interp run to show for the dictionary "
                                                    "it explained (a name under workspace/interp/ or a directory; "
                                                    "repeatable, one per dictionary). Default: interp/DICTIONARY, "
                                                    "else the newest run of it.")) -> None:
        """Write a static HTML report of every stage that has run (index, dictionary, latent, matching, SFAL pages);
        open index.html in a browser, no server needed."""
        from .._io import check_output_dir
        from ..report import ReportConfig, run
        from ..report.model_view import for_workspace
        from ..workspace import Workspace
        from . import console

        ws = Workspace.at(workspace)
        if out is not None:
            check_output_dir(out, "--out")
        config = ReportConfig(max_latent_pages=max_latent_pages, n_top_examples=n_examples,
                              interp_runs=tuple(interp_run))
        index = run(config, ws, out, for_workspace(ws, model))
        console.print(f"report written: open [bold]{index.resolve().as_uri()}[/]", highlight=False, soft_wrap=True)
