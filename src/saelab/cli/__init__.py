"""The `saelab` command line: a thin layer over each stage's `run(...)`.

Each command group lives in its own module with a `register(app)` function. User
mistakes (`SaelabError`) print one line and exit with code 2, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys

import typer
from rich.console import Console

from ..errors import SaelabError

app = typer.Typer(
    name="saelab",
    help="Train, evaluate and interpret sparse dictionaries (SAEs, transcoders, crosscoders) on real language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)
INTERRUPTED = ("interrupted: finished stages and saved work are kept; run the same command again to resume "
               "where it stopped")


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details (INFO).")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _register_all() -> None:
    from . import basics, cache, demo, dictionaries, evals, match, report
    from . import diff as diff_cli
    from . import finetune as finetune_cli
    from . import interp as interp_cli
    from . import sfal as sfal_cli
    from . import train as train_cli

    for module in (basics, demo, cache, train_cli, evals, dictionaries, match, sfal_cli, report, interp_cli,
                   finetune_cli, diff_cli):
        module.register(app)


_register_all()


# Options that delphi's users pass several values after one flag (`--hookpoints layers.5 layers.16`).
MULTI_VALUE = ("--hookpoints", "--scorers")


def expand_multi_value(argv: list[str]) -> list[str]:
    """`--hookpoints a b --x` -> `--hookpoints a --hookpoints b --x` (click takes one value per flag)."""
    out: list[str] = []
    flag = None  # the multi-value flag whose values are being read
    for arg in argv:
        if arg in MULTI_VALUE:
            flag = arg
        elif flag and not arg.startswith("-"):
            if out[-1] != flag:
                out.append(flag)  # a second (third, …) value: repeat the flag before it
        else:
            flag = None
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `saelab` console script."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(args=expand_multi_value(sys.argv[1:] if argv is None else list(argv)), standalone_mode=True)
    except SaelabError as e:
        from rich.markup import escape  # a message may hold brackets ("org/name[/path]"), never markup

        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit) as e:
        # typer turns Ctrl-C into a silent exit 130; say what was kept and how to go on
        if isinstance(e, SystemExit) and e.code != 130:
            raise
        err_console.print(INTERRUPTED, highlight=False, soft_wrap=True)
        sys.exit(130)
