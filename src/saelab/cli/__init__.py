"""The `saelab` command line: a thin layer over each stage's `run(...)`.

Each command group lives in its own module with a `register(app)` function. User
mistakes (`SaelabError`) and files the system refuses (`OSError`) print one line and exit with
code 2, never a traceback; anything else is a bug: one line, exit code 1 (`saelab -v` shows the traceback).
"""

from __future__ import annotations

import os
import sys

import click
import typer
import typer.core
from rich.console import Console

from ..errors import SaelabError, file_error, first_line

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
INTERRUPTED = ("interrupted: saved work is kept (checkpoints, finished shards and stages; a line above says which "
               "where there is one); resuming is the default, so the same command goes on where it stopped: {command}")


# The commands that split their work over the ranks of a torchrun process group; the others run in one process.
TORCHRUN_COMMANDS = ("train", "cache", "eval", "compare", "cooc", "diff")


@app.callback()
def _root(ctx: typer.Context, verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details "
                                                           "(INFO), and the warnings and bars of the Hugging Face "
                                                           "libraries.")) -> None:
    from .output import configure_output

    configure_output(verbose)
    world = os.environ.get("WORLD_SIZE", "1")
    if world.isdigit() and int(world) > 1 and ctx.invoked_subcommand not in TORCHRUN_COMMANDS \
            and "--help" not in sys.argv:
        # every rank would run the whole command and write the same artifacts
        from ..errors import ConfigError

        raise ConfigError(f"saelab {ctx.invoked_subcommand} runs in one process, not under torchrun (got "
                          f"WORLD_SIZE={world}); run it without torchrun. Under torchrun: "
                          f"{', '.join(TORCHRUN_COMMANDS)}")


def _register_all() -> None:
    from . import basics, cache, demo, dictionaries, evals, match, report
    from . import diff as diff_cli
    from . import finetune as finetune_cli
    from . import interp as interp_cli
    from . import sfal as sfal_cli
    from . import synth as synth_cli
    from . import train as train_cli

    for module in (basics, demo, cache, train_cli, evals, dictionaries, match, sfal_cli, report, interp_cli,
                   finetune_cli, diff_cli, synth_cli):
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


# typer runs on its own copy of click (typer._click) in recent versions, on click before
_CLICKS = {click, getattr(typer.core, "_click", click)}
_USAGE_ERRORS = tuple(m.exceptions.UsageError for m in _CLICKS)
_ABORTS = (click.Abort, typer.Abort)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `saelab` console script, and its one error boundary.

    A user's mistake (`SaelabError`) or a file the system refused (`OSError`: missing, a file where a directory
    belongs, no permission, read-only, disk full) prints one line naming the path and the fix, exit code 2. Any
    other exception is a bug in saelab: one line naming it, exit code 1. `saelab -v COMMAND` adds the traceback.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = expand_multi_value(sys.argv[1:] if argv is None else list(argv))
    try:
        code = app(args=args, prog_name="saelab", standalone_mode=False)  # usage errors come back: one line below
        if code == 130:  # typer turns Ctrl-C into exit code 130
            raise KeyboardInterrupt
        sys.exit(code if isinstance(code, int) else 0)
    except _USAGE_ERRORS as e:  # an unknown option, a value of the wrong type, a missing argument
        if type(e).__name__ == "NoArgsIsHelpError":  # `saelab` alone: the help is already shown
            sys.exit(e.exit_code)
        where = e.ctx.command_path if e.ctx is not None else "saelab"
        _fail(f"{where}: {e.format_message()} (see {where} --help)", e.exit_code, args)
    except _ABORTS:  # end of input at a prompt
        _fail("aborted", 1, args)
    except SaelabError as e:
        _fail(str(e), 2, args)
    except OSError as e:
        _fail(str(file_error(e)), 2, args)
    except (KeyboardInterrupt, SystemExit) as e:
        # say what was kept and how to go on
        if isinstance(e, SystemExit) and e.code != 130:
            raise
        import shlex

        err_console.print(INTERRUPTED.format(command=shlex.join(["saelab", *args])), highlight=False, soft_wrap=True,
                          markup=False)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the boundary: a bug still ends in one line, not a page of traceback
        first = first_line(e, 300) if str(e).strip() else ""
        _fail(f"internal error: {type(e).__name__}{': ' + first if first else ''} — a bug in saelab; run with -v "
              "(saelab -v COMMAND …) for the traceback", 1, args)


def _verbose(args: list[str]) -> bool:
    """`-v` / `--verbose` among the root options (those before the command name)."""
    for arg in args:
        if not arg.startswith("-"):
            return False
        if arg in ("-v", "--verbose"):
            return True
    return False


def _fail(message: str, code: int, args: list[str]) -> None:
    """Print `message` as one `error:` line on stderr (after the traceback, with -v) and exit with `code`. Under
    torchrun the line names the rank that printed it."""
    from rich.markup import escape  # a message may hold brackets ("org/name[/path]"), never markup

    if _verbose(args):
        import traceback

        traceback.print_exc()
    line = " ".join(message.splitlines())
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE", "1")
    if rank is not None and world.isdigit() and int(world) > 1:  # torchrun: every rank prints its own error
        line = f"[rank {rank} of {world}] {line}"
    err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    sys.exit(code)
