"""`saelab dict info PATH`: what a dictionary file or directory is, in any supported format."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from ..errors import ConfigError, choices_message
from . import common as opt

OUTPUTS = ("table", "json")


def register(app: typer.Typer) -> None:
    group = typer.Typer(name="dict", no_args_is_help=True,
                        help="Sparse dictionaries in saelab's format, SAELens, Gemma Scope, Llama Scope, sparsify or "
                        "dictionary_learning; local or on the Hub.")

    @group.command()
    def info(path: str = typer.Argument(..., help="A dictionary of the workspace, a dictionary directory, params.npz / "
                                        "ae.pt file, a run directory or "
                                        "downloaded tree (with the selectors), a Hub repo org/name(/PATH)(@REVISION), "
                                        "or saelens:RELEASE/ID."),
             hookpoint: Optional[str] = typer.Option(None, "--hookpoint", "-H",
                                                     help="Tree selector: the hookpoint folder to read (sparsify "
                                                     "layers.16, SAELens blocks.8.hook_resid_pre)."),
             output: str = typer.Option("table", "--output", "-o", help="table | json."),
             layer: Optional[int] = opt.SelLayer, width: Optional[str] = opt.SelWidth, l0: Optional[str] = opt.SelL0,
             site: Optional[str] = opt.SelSite, cache_dir: Optional[str] = opt.HubCacheDir,
             workspace: Optional[str] = opt.WorkspaceOpt) -> None:
        """Print architecture, kind, d_in, d_sae, k, hookpoint and source format of a dictionary."""
        from ..coders import describe_dictionary
        from ..workspace import Workspace
        from . import console

        if output not in OUTPUTS:
            raise ConfigError(choices_message("--output", output, OUTPUTS))
        described = describe_dictionary(path, selector=opt.selector(hookpoint, layer, width, l0, site),
                                        workspace=Workspace.at(workspace))
        if output == "json":
            console.print_json(json.dumps(described))
            return
        table = Table(title=f"Dictionary {described['path']}", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        for key in ("architecture", "kind", "d_in", "d_sae", "d_out", "k", "hookpoint", "out_hookpoint",
                    "source_format", "model", "n_sources", "skip", "apply_b_dec_to_input", "group_sizes", "dtype",
                    "n_params"):
            value = described[key]
            if value not in (None, "", ()):
                table.add_row(key, f"{value:,}" if key == "n_params" else str(value))
        source = described["source"]
        if source.get("repo"):
            table.add_row("hub", f"{source['repo']}/{source['path']} @ {source['revision']}".replace("/ @", " @"))
        console.print(table)

    app.add_typer(group, name="dict")
