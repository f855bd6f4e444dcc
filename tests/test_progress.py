"""Progress: a bar on a terminal; plain lines on a log (CI, nohup, a cluster job) at a steady interval and at the
end; work resumed from an earlier run counts as done but not in the rate."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from saelab import progress
from saelab.progress import EVERY_ENV, Meter, StderrHandler, status_line, token_progress
from saelab.train.loop import train_progress
from tests.conftest import corpus_file, save_model


class Clock:
    """The clock of saelab.progress, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(progress, "monotonic", c)
    return c


@pytest.fixture
def lines(caplog):
    """The plain progress lines logged so far: `lines()`."""
    caplog.set_level(logging.INFO, logger="saelab.progress")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "saelab.progress"]


def test_off_a_terminal_a_line_at_every_interval_and_at_the_end(clock, lines, monkeypatch):
    monkeypatch.setenv(EVERY_ENV, "30")
    with token_progress(1000, "activations") as advance:
        for _ in range(100):  # one step a second: lines at 30, 60 and 90 s, then the last one
            clock.now += 1
            advance(10)
    out = lines()
    assert len(out) == 4
    assert out[0].startswith("activations: 300/1,000 tok (30%), 10 tok/s, elapsed 0:00:30, eta 0:01:10")
    assert out[-1] == "activations: 1,000/1,000 tok (100%), 10 tok/s, elapsed 0:01:40, eta 0:00:00 (finished)"


def test_resumed_work_is_done_but_not_in_the_rate(clock, lines, monkeypatch):
    """900 of 1,000 units came from an earlier run: this run did 50 in 10 s, 5/s, so 10 s are left."""
    monkeypatch.setenv(EVERY_ENV, "0")
    with token_progress(1000, "cache", done=600) as advance:
        advance.skip(300, "shard 4/10")  # a finished shard found on the way
        clock.now += 10
        advance(50, "shard 5/10")
    out = lines()
    assert out[-2] == ("cache: 950/1,000 tok (95%) (900 resumed), 5 tok/s, elapsed 0:00:10, eta 0:00:10 | "
                         "shard 5/10")
    assert out[-1].endswith("(stopped)")  # it ended short of the total


def test_meter_rate_excludes_resumed_units(clock):
    meter = Meter(total=10_000, done=8_000)
    assert meter.rate is None and meter.eta is None  # nothing of this run yet
    clock.now += 4
    meter.skip(1_000)
    meter.advance(200)
    assert meter.rate == 50 and meter.eta == 16
    assert "50 tok/s" in status_line("train", meter, "tok")


def test_slow_units_read_as_seconds_per_unit(clock):
    meter = Meter(total=10)
    clock.now += 25
    meter.advance(2)
    assert "12.5 s/latent" in status_line("explaining", meter, "latents")


def test_train_progress_shows_the_step_and_the_metrics(clock, lines, monkeypatch):
    monkeypatch.setenv(EVERY_ENV, "0")
    with train_progress(100, 40, True, steps=(4, 10)) as update:  # resumed at step 4 of 10
        for _ in range(6):
            clock.now += 1
            update(10, "sae: FVU 0.2")
    out = lines()
    assert len(out) == 7
    assert out[0] == ("train: 50/100 tok (50%) (40 resumed), 10 tok/s, elapsed 0:00:01, eta 0:00:05 | "
                        "step 5/10  sae: FVU 0.2")
    assert out[-1].startswith("train: 100/100 tok (100%) (40 resumed), 10 tok/s") and "step 10/10" in out[-1]


def test_disabled_progress_is_silent(clock, lines, monkeypatch, capsys):
    monkeypatch.setenv(EVERY_ENV, "0")
    with token_progress(10, "quiet", enabled=False) as advance:
        advance(10)
    assert lines() == [] and capsys.readouterr().err == ""


def test_a_bad_interval_warns_and_keeps_the_default(monkeypatch, caplog):
    monkeypatch.setenv(EVERY_ENV, "soon")
    assert progress.progress_every() == 30
    assert "SAELAB_PROGRESS_EVERY: got 'soon'" in caplog.text


def test_lines_reach_stderr_through_the_cli_handler(monkeypatch, capsys):
    """The CLI logs through StderrHandler; off a terminal (captured here) the lines are plain text on stderr."""
    monkeypatch.setenv(EVERY_ENV, "0")
    logger = logging.getLogger("saelab.progress")
    handler = StderrHandler()
    monkeypatch.setattr(logger, "level", logging.INFO)
    logger.addHandler(handler)
    try:
        with token_progress(20, "fine-tune") as advance:
            advance(10, "step 1/2")
            advance(10, "step 2/2")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("fine-tune: ") for line in err)
    assert "\x1b" not in "".join(err)  # no bar, no escape codes in a log
    assert err[-1].startswith("fine-tune: 20/20 tok (100%)") and err[-1].endswith("step 2/2 (finished)")


def test_on_a_terminal_a_bar_and_no_plain_lines(monkeypatch, lines, capsys):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: stderr is a terminal
    monkeypatch.setenv(EVERY_ENV, "0")
    with token_progress(100, "activations", done=50) as advance:
        advance(50)
    assert lines() == []
    err = capsys.readouterr().err
    assert "activations" in err and "100/100" in err and "tok/s" in err


def test_the_cli_prints_progress_lines_to_a_log(tiny_llama, tmp_path):
    """`saelab train` with stderr to a pipe: progress lines with the step, nothing else on stderr (no
    third-party warnings or bars); the result on stdout."""
    model, corpus = save_model(tiny_llama, tmp_path / "model"), corpus_file(tmp_path, 60)
    argv = ["train", "-m", model, "-w", str(tmp_path / "ws"), "--corpus", str(corpus), "--ctx-len", "32",
            "--n-tokens", "512", "-H", "resid_post.1", "--d-sae", "64", "--k", "4", "--batch-size", "4",
            "--name", "tiny", "--dtype", "float32"]
    env = {**_env(), EVERY_ENV: "0"}
    r = subprocess.run([sys.executable, "-c", "from saelab.cli import main; main()", *argv], capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    err = r.stderr.splitlines()
    assert err and all(line.startswith("train: ") and " tok/s" in line for line in err), r.stderr
    assert any("step 1/4" in line for line in err)
    assert err[-1].startswith("train: 512/512 tok (100%)") and "(finished)" in err[-1]
    assert "FVU" in r.stdout


def _env() -> dict[str, str]:
    """This environment without the variables that make rich take a pipe for a terminal."""
    return {k: v for k, v in os.environ.items() if k not in ("TTY_COMPATIBLE", "FORCE_COLOR")}
