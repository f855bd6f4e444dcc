"""Progress bars for long loops (tokens/s), drawn with rich on stderr."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RateColumn(TextColumn):
    """Items per second of a task, e.g. `1,234 tok/s`."""

    def __init__(self, unit: str) -> None:
        super().__init__("")
        self.unit = unit

    def render(self, task):  # type: ignore[override]
        from rich.text import Text

        speed = task.finished_speed or task.speed
        if not speed:
            return Text(f"- {self.unit}/s", style="cyan")
        if speed < 1:  # slow units (an LLM explanation per latent): seconds per unit reads better than 0/s
            return Text(f"{1 / speed:,.1f} s/{self.unit.removesuffix('s')}", style="cyan")
        return Text(f"{speed:,.0f} {self.unit}/s", style="cyan")


@contextmanager
def token_progress(total: int, description: str, enabled: bool = True,
                   unit: str = "tok") -> Iterator[Callable[[int], None]]:
    """A progress bar over `total` units; yields `advance(n)`. Silent when disabled."""
    if not enabled:
        yield lambda n: None
        return
    console = Console(file=sys.stderr)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(unit),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
