"""A fast front door: `saelab --help`, `saelab CMD --help` and a mistyped argument answer without importing torch
or transformers (those take seconds to import; the commands import them in their bodies, when they run)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "datasets", "sentence_transformers")

PROBE = """
import sys

import typer.main

from saelab.cli import app, main

group = typer.main.get_group(app)
commands = [[name] for name, c in group.commands.items() if not hasattr(c, "commands")]
commands += [[name, sub] for name, c in group.commands.items() for sub in getattr(c, "commands", {})]
runs = [sys.argv[1:]] if len(sys.argv) > 1 else [["--help"], *([*cmd, "--help"] for cmd in commands)]
codes = []
for argv in runs:
    try:
        main(argv)
    except SystemExit as e:
        codes.append(e.code or 0)
print("codes", codes, "commands", len(runs), file=sys.stderr)
print("heavy", sorted(m for m in HEAVY if m in sys.modules), file=sys.stderr)
sys.exit(max(codes))
""".replace("HEAVY", repr(HEAVY))


def _probe(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)


def test_every_help_is_answered_without_torch():
    """`saelab --help` and `saelab CMD --help` of every command (and sub-command), in one process."""
    r = _probe()
    assert r.returncode == 0, r.stderr
    assert "heavy []" in r.stderr, r.stderr
    n = int(r.stderr.split("commands ")[1].split()[0])
    assert n > 15 and "Usage" in r.stdout


def test_train_help_without_torch():
    r = _probe("train", "--help")
    assert r.returncode == 0 and "--d-sae" in r.stdout
    assert "heavy []" in r.stderr, r.stderr


def test_an_argument_error_exits_2_without_torch():
    r = _probe("train", "--d-sae", "abc")
    assert r.returncode == 2, r.stderr
    assert "--d-sae" in r.stderr and "Traceback" not in r.stderr
    assert "heavy []" in r.stderr, r.stderr
