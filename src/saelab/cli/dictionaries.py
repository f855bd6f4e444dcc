"""`saelab dict info PATH`: what a dictionary file or directory is, in any supported format."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from ..errors import ConfigError, choices_message

OUTPUTS = ("table", "json")


def register(app: typer.Typer) -> None:
    group = typer.Typer(name="dict", no_args_is_help=True,
                        help="Sparse dictionaries in saelab's format, SAELens, Gemma Scope, sparsify or dictionary_learning.")

    @group.command()
    def info(path: str = typer.Argument(..., help="Dictionary directory, params.npz / ae.pt file, or a run directory."),
             hookpoint: Optional[str] = typer.Option(None, "--hookpoint", "-H",
                                                     help="Sub-directory to read in a run directory holding several."),
             output: str = typer.Option("table", "--output", "-o", help="table | json.")) -> None:
        """Print architecture, kind, d_in, d_sae, k, hookpoint and source format of a dictionary."""
        from ..coders import describe_dictionary
        from . import console

        if output not in OUTPUTS:
            raise ConfigError(choices_message("--output", output, OUTPUTS))
        described = describe_dictionary(path, hookpoint=hookpoint)
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
        console.print(table)

    app.add_typer(group, name="dict")
