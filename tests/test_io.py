import shutil
import subprocess
from pathlib import Path

import pytest

import saelab
from saelab._io import source_commit, versions


def _checkout_head() -> str | None:
    here = Path(saelab.__file__).resolve().parent
    if shutil.which("git") is None:
        return None
    out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def test_versions_name_the_commit_the_code_runs_from():
    head = _checkout_head()
    if head is None:
        pytest.skip("saelab is not running from a git checkout here")
    commit = versions()["saelab_commit"]
    assert commit == source_commit()
    assert commit.removesuffix("+dirty") == head and len(head) == 40


def test_no_commit_outside_a_checkout(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    source_commit.cache_clear()
    monkeypatch.setattr(subprocess, "run", no_git)
    try:
        assert source_commit() is None
        assert "saelab_commit" not in versions() and versions()["python"]
    finally:
        source_commit.cache_clear()
