"""Progress of long loops: a rich bar on a terminal, plain log lines anywhere else.

On a terminal, stderr shows a live bar with units done/total, the rate and the ETA. When stderr is
a file or a pipe (CI, `nohup`, a cluster job) a bar would draw nothing, so the same numbers go to
the `saelab.progress` logger as one INFO line every `SAELAB_PROGRESS_EVERY` seconds (default 30;
0: after every step) and one at the end:

    train: 1,310,720/20,000,000 tok (7%), 5,432 tok/s, elapsed 0:04:01, eta 0:57:20 | step 160/2,442 ...

Work resumed from an earlier run (a checkpoint's steps, finished shards) counts toward done but not
toward the rate, so a resumed run does not report the speed of work it never did.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from datetime import timedelta
from time import monotonic
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

log = logging.getLogger(__name__)

EVERY_ENV = "SAELAB_PROGRESS_EVERY"
"""Environment variable: seconds between two plain progress lines (0: a line after every step)."""
DEFAULT_EVERY = 30.0


class Meter:
    """Units done of a loop, and its rate over the work this run did (resumed units excluded)."""

    def __init__(self, total: int, done: int = 0) -> None:
        self.total, self.done, self.resumed = total, done, done
        self.start = monotonic()

    def advance(self, n: int) -> None:
        self.done += n

    def skip(self, n: int) -> None:
        """n units done by an earlier run: done, but no part of this run's rate."""
        self.done += n
        self.resumed += n

    @property
    def elapsed(self) -> float:
        return monotonic() - self.start

    @property
    def rate(self) -> float | None:
        """Units per second of this run's own work; None before any."""
        new, elapsed = self.done - self.resumed, self.elapsed
        return new / elapsed if new > 0 and elapsed > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate; None while unknown."""
        rate = self.rate
        return max(self.total - self.done, 0) / rate if rate else None


def rate_text(rate: float | None, unit: str) -> str:
    """`1,234 tok/s`; slow units (an LLM explanation per latent) read better as `12.5 s/latent` than `0 latents/s`."""
    if not rate:
        return f"- {unit}/s"
    if rate < 1:
        return f"{1 / rate:,.1f} s/{unit.removesuffix('s')}"
    return f"{rate:,.0f} {unit}/s"


def _duration(seconds: float | None) -> str:
    return "?" if seconds is None else str(timedelta(seconds=int(seconds)))


def status_line(description: str, meter: Meter, unit: str, note: str = "") -> str:
    """One plain line: the stage, units done/total (and resumed), the rate, elapsed time and ETA, the note."""
    pct = f" ({meter.done / meter.total:.0%})" if meter.total else ""
    resumed = f" ({meter.resumed:,} resumed)" if meter.resumed else ""
    line = (f"{description}: {meter.done:,}/{meter.total:,} {unit}{pct}{resumed}, {rate_text(meter.rate, unit)}, "
            f"elapsed {_duration(meter.elapsed)}, eta {_duration(meter.eta)}")
    return f"{line} | {note}" if note else line


class RateColumn(ProgressColumn):
    """The rate of a task, e.g. `1,234 tok/s`: from its `meter` field (resumed work excluded), else rich's."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:  # type: ignore[override]
        meter = task.fields.get("meter")
        rate = meter.rate if meter is not None else task.finished_speed or task.speed
        return Text(rate_text(rate, self.unit), style="cyan")


class EtaColumn(ProgressColumn):
    """Time left of a task at its meter's rate."""

    def render(self, task) -> Text:  # type: ignore[override]
        meter = task.fields.get("meter")
        eta = meter.eta if meter is not None else task.time_remaining
        return Text(f"eta {_duration(eta)}", style="cyan")


class Advance:
    """What a progress context yields: `advance(n)` after n units of work (`advance(n, note)` also sets the text
    shown beside the numbers: a step, a shard, a loss); `advance.skip(n)` for n units an earlier run did."""

    def __init__(self, meter: Meter, show) -> None:
        self.meter, self.note, self._show = meter, "", show

    def __call__(self, n: int, note: str | None = None) -> None:
        self.meter.advance(n)
        if note is not None:
            self.note = note
        self._show()

    def skip(self, n: int, note: str | None = None) -> None:
        self.meter.skip(n)
        if note is not None:
            self.note = note
        self._show()


def progress_every() -> float:
    """Seconds between plain progress lines: $SAELAB_PROGRESS_EVERY, else 30."""
    value = os.environ.get(EVERY_ENV, "").strip()
    if not value:
        return DEFAULT_EVERY
    try:
        seconds = float(value)
        if seconds >= 0:
            return seconds
    except ValueError:
        pass
    log.warning("%s: got %r; expected seconds between progress lines (e.g. 30; 0: every step); using %g",
                EVERY_ENV, value, DEFAULT_EVERY)
    return DEFAULT_EVERY


@contextmanager
def token_progress(total: int, description: str, enabled: bool = True, unit: str = "tok",
                   done: int = 0) -> Iterator[Advance]:
    """Progress over `total` units, `done` of them by an earlier run; yields `advance` (see `Advance`).

    A rich bar when stderr is a terminal, else plain INFO lines on the `saelab.progress` logger (see the
    module's docstring). Silent when not `enabled`.

    Example:
        >>> with token_progress(windows.n_tokens, "activations") as advance:
        ...     for batch in batches:
        ...         advance(batch.numel())
    """
    meter = Meter(total, done)
    if not enabled:
        yield Advance(meter, lambda: None)
        return
    console = Console(stderr=True)  # sys.stderr as it is when written to (a test's capture, rich's proxy)
    if console.is_terminal or console.is_jupyter:
        with _bar(console, meter, description, unit) as advance:
            yield advance
        return
    every, last = progress_every(), meter.start

    def show() -> None:
        nonlocal last
        now = monotonic()
        if now - last >= every:
            log.info("%s", status_line(description, meter, unit, advance.note))
            last = now

    advance = Advance(meter, show)
    try:
        yield advance
    finally:
        if meter.total or meter.done:
            end = "finished" if meter.done >= meter.total else "stopped"
            log.info("%s (%s)", status_line(description, meter, unit, advance.note), end)


@contextmanager
def _bar(console: Console, meter: Meter, description: str, unit: str) -> Iterator[Advance]:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(unit),
               TimeElapsedColumn(), EtaColumn(), TextColumn("{task.fields[note]}", markup=False))
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=meter.total, completed=meter.done, meter=meter, note="")
        advance = Advance(meter, lambda: bar.update(task, completed=meter.done, note=advance.note))
        yield advance


class StderrHandler(logging.StreamHandler):
    """A log handler that writes to `sys.stderr` as it is at each line: while a bar is live, rich swaps in a
    proxy that prints the line above the bar, so log lines and the bar never interleave."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass
