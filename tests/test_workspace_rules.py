"""Nothing lost, nothing silent (#27): names stay inside the workspace, one writer per artifact, resume is the
default (Ctrl-C says what was kept and the command that goes on), nothing is written over without --overwrite,
and readers refuse what was built from inputs that changed since (a store of a dictionary trained again)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from saelab.errors import ArtifactError, ConfigError
from saelab.lock import hold, read_holder
from saelab.workspace import Workspace, check_name, difference

from .conftest import corpus_file, run_cli, save_model

HOLDER = """import sys, time
from saelab.lock import hold
with hold(sys.argv[1], "an artifact"):
    print("held", flush=True)
    time.sleep(300)
"""


def hold_elsewhere(lock: Path) -> subprocess.Popen:
    """Another process that holds the lock file `lock` until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup runs: the lock file stays, naming a dead process
    proc.wait()


def _out(capsys) -> str:
    out = capsys.readouterr()
    return " ".join((out.out + out.err).split())


# --- names ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sae-l6-16k", "tc-resid_post.1-to-mlp_out.2-64-k4", "a=b", "Gemma_Scope.16k"])
def test_a_name_is_one_directory(name, tmp_path):
    assert check_name(name) == name
    assert Workspace(tmp_path).latents(name) == tmp_path / "latents" / name


@pytest.mark.parametrize("name", ["", "..", "../x", "../../evil", "a/b", "a\\b", ".hidden", "x..y", "/abs", "a\nb"])
def test_a_name_that_would_leave_the_workspace_is_refused(name, tmp_path):
    ws = Workspace(tmp_path)
    for path in (ws.dictionary, ws.train, ws.latents, ws.evals, ws.cooc, ws.interp):
        with pytest.raises(ConfigError, match="names one directory inside the workspace"):
            path(name)
    with pytest.raises(ConfigError):
        ws.lock("latents", name)


def test_difference_names_what_changed():
    assert difference({"config": {"k": 8, "top_k": 5}, "a": 1}, {"config": {"k": 4, "top_k": 5}}) == "config.k: 8 → 4"
    assert difference({"a": 1}, {"a": 1}) == "none found"


# --- the lock ---------------------------------------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken_over(tmp_path, caplog):
    lock = tmp_path / ".locks" / "latents" / "full.lock"
    proc = hold_elsewhere(lock)
    try:
        with pytest.raises(ArtifactError, match=rf"being written by another saelab process \(PID {proc.pid} on "):
            with hold(lock, "latents/full"):
                pass
        assert read_holder(lock)["pid"] == proc.pid  # the refusal left the holder's lock alone
    finally:
        kill(proc)
    assert read_holder(lock)["pid"] == proc.pid  # SIGKILL: the file stays, its holder is gone
    with caplog.at_level("WARNING"), hold(lock, "latents/full"):
        assert read_holder(lock)["pid"] == os.getpid()
        assert "command" in read_holder(lock) and "host" in read_holder(lock)
    assert "took over the stale lock" in caplog.text and f"PID {proc.pid} is not running" in caplog.text
    assert not lock.exists()  # let go: removed


def test_a_lock_is_reentrant_and_let_go_on_an_error_or_ctrl_c(tmp_path):
    lock = tmp_path / "x.lock"
    with hold(lock, "x"), hold(lock, "x"):  # a stage that calls another writer of the same artifact
        assert lock.exists()
    assert not lock.exists()
    for error in (ValueError, KeyboardInterrupt):
        with pytest.raises(error), hold(lock, "x"):
            raise error()
        assert not lock.exists()


# --- the command line on a tiny model ---------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def template(tiny_llama, tmp_path_factory):
    """A model directory, a corpus and a workspace where `base` was trained (copied by each test)."""
    root = tmp_path_factory.mktemp("rules")
    paths = {"model": save_model(tiny_llama, root / "model"), "corpus": str(corpus_file(root, 120)),
             "ws": root / "ws"}
    assert run_cli(*_train_args(paths, "base")) == 0
    return paths


@pytest.fixture
def paths(template, tmp_path):
    shutil.copytree(template["ws"], tmp_path / "ws")
    return {**template, "ws": tmp_path / "ws"}


def _train_args(paths, name: str, *extra: str) -> list[str]:
    return ["train", "-m", paths["model"], "-w", str(paths["ws"]), "--corpus", paths["corpus"], "--ctx-len", "32",
            "--n-tokens", "1024", "-H", "resid_post.1", "--d-sae", "64", "--k", "4", "--batch-size", "4",
            "--checkpoint-every", "2", "--dtype", "float32", "--name", name, *extra]


def _cache_args(paths, *extra: str) -> list[str]:
    return ["cache", "-d", "base", "-m", paths["model"], "-w", str(paths["ws"]), "--dtype", "float32",
            "--batch-size", "4", "--shard-windows", "8", *extra]


def _interp_args(paths, *extra: str) -> list[str]:
    return ["autointerp", paths["model"], "base", "-w", str(paths["ws"]), "--explainer", "top-tokens", "--scorers",
            "embedding", "--min-examples", "2", "--example-ctx-len", "8", "--n-examples-train", "2",
            "--n-examples-test", "2", "--n-non-activating", "2", "--max-latents", "2", *extra]


class _BagOfWords:  # stands in for all-MiniLM-L6-v2
    def __init__(self, *args, **kwargs):
        self.name = "bow"

    def embed(self, texts):
        from .interp.test_run import _embed

        return _embed(texts)


def _locks(ws: Path) -> list[Path]:
    return sorted((ws / ".locks").rglob("*.lock"))


def test_names_outside_the_workspace_are_refused_before_anything_is_written(paths, capsys):
    before = sorted(p.relative_to(paths["ws"].parent) for p in paths["ws"].parent.rglob("*"))
    assert run_cli(*_train_args(paths, "../../evil")) == 2
    assert "--name: got '../../evil'" in _out(capsys)
    assert run_cli(*_interp_args(paths, "--name", "../x")) == 2
    assert "--name: got '../x'" in _out(capsys)
    assert run_cli(*_cache_args(paths)[:2], ".x=base", *_cache_args(paths)[3:]) == 2
    assert "got '.x'" in _out(capsys)
    assert sorted(p.relative_to(paths["ws"].parent) for p in paths["ws"].parent.rglob("*")) == before


def test_train_ctrl_c_keeps_the_checkpoint_and_the_same_command_resumes(paths, capsys, caplog, monkeypatch):
    from saelab.coders import SparseCoder
    from saelab.train import DictionaryTrainer

    step, calls = DictionaryTrainer.step, [0]

    def interrupted(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 5:  # Ctrl-C in step 5; the last checkpoint is step 4's (one every 2 steps)
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(DictionaryTrainer, "step", interrupted)
    args = _train_args(paths, "cut")
    with caplog.at_level("WARNING"):
        assert run_cli(*args) == 130
    err = _out(capsys)
    assert "saved work is kept" in err and "saelab " + " ".join(args) in err  # the exact command that resumes
    assert "keeps its checkpoint at step 4 of 8" in caplog.text
    assert not (paths["ws"] / "dictionaries" / "cut").exists() and not _locks(paths["ws"])
    monkeypatch.undo()
    assert run_cli(*args) == 0
    assert "resuming" in _out(capsys)
    resumed, whole = (SparseCoder.load(paths["ws"] / "dictionaries" / n).state_dict() for n in ("cut", "base"))
    assert all(bool((resumed[k] == whole[k]).all()) for k in whole)  # as if never interrupted


def test_cache_ctrl_c_keeps_finished_shards_and_the_same_command_resumes(paths, capsys, caplog, monkeypatch):
    import importlib

    from saelab.latents import LatentStore

    latents_run = importlib.import_module("saelab.latents.run")
    encode, calls = latents_run._encode_batch, [0]

    def interrupted(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 5:  # 2 batches per shard: Ctrl-C in shard 2, after 2 finished shards
            raise KeyboardInterrupt
        return encode(*args, **kwargs)

    monkeypatch.setattr(latents_run, "_encode_batch", interrupted)
    with caplog.at_level("WARNING"):
        assert run_cli(*_cache_args(paths)) == 130
    # 5 shards of 8 windows: the training windows and the 8 held out after them (train --heldout-windows)
    assert "saelab cache -d base" in _out(capsys) and "keeps 2 of 5 shards" in caplog.text
    store = paths["ws"] / "latents" / "base"
    with pytest.raises(ArtifactError, match="incomplete"):
        LatentStore(store)  # a reader never takes a half-written store for a whole one
    first = (store / "shards" / "shard-00000.safetensors").stat().st_mtime_ns
    monkeypatch.undo()
    assert run_cli(*_cache_args(paths)) == 0
    assert (store / "shards" / "shard-00000.safetensors").stat().st_mtime_ns == first  # kept, not redone
    assert LatentStore(store).cfg["complete"] and not _locks(paths["ws"])


def test_a_retrained_dictionary_makes_its_store_and_interp_run_stale_until_rebuilt(paths, capsys, monkeypatch):
    monkeypatch.setattr("saelab.models.embed.Embedder", _BagOfWords)
    report = ["report", str(paths["ws"]), "--model", "none", "--max-latent-pages", "4"]
    assert run_cli(*_cache_args(paths)) == 0
    assert run_cli(*_interp_args(paths)) == 0
    assert run_cli(*report) == 0
    capsys.readouterr()

    assert run_cli(*_train_args(paths, "base", "--k", "8")) == 2  # other options: refused, nothing replaced
    assert "--overwrite" in _out(capsys)
    assert run_cli(*_train_args(paths, "base", "--k", "8", "--overwrite")) == 0
    capsys.readouterr()
    # the store was cached from the old weights: every reader refuses it, naming the command that rebuilds it
    assert run_cli(*_cache_args(paths)) == 2
    err = _out(capsys)
    assert "dictionary_hash" in err and "--overwrite" in err and "NEW_NAME=SPEC" in err
    assert run_cli(*_interp_args(paths)) == 2
    err = _out(capsys)
    assert "reusing" not in err and "stale" in err and "saelab cache -d base" in err and "--overwrite" in err
    assert run_cli(*report) == 2
    assert "stale activations" in _out(capsys)

    assert run_cli(*_cache_args(paths, "--overwrite")) == 0
    capsys.readouterr()
    # the interp run explains the old store: refused until redone
    assert run_cli(*_interp_args(paths)) == 2
    assert "explains another latent store" in _out(capsys)
    assert run_cli(*report) == 2
    assert "saelab autointerp" in _out(capsys)
    assert run_cli(*_interp_args(paths, "--overwrite", "all")) == 0
    assert run_cli(*report) == 0
    built = json.loads((paths["ws"] / "report" / "cfg.json").read_text())["built_from"]
    store_cfg = json.loads((paths["ws"] / "latents" / "base" / "cfg.json").read_text())
    assert built["stores"]["base"]["dictionary_hash"] == store_cfg["dictionary_hash"]
    assert not _locks(paths["ws"])


def test_two_writers_of_one_run_the_second_is_refused_and_a_dead_ones_lock_taken_over(paths, capsys, caplog):
    proc = hold_elsewhere(paths["ws"] / ".locks" / "train" / "cc.lock")  # another `saelab train --name cc`
    try:
        assert run_cli(*_train_args(paths, "cc")) == 2
        err = _out(capsys)
        assert f"PID {proc.pid}" in err and "being written by another saelab process" in err
        assert not (paths["ws"] / "dictionaries" / "cc").exists() and not (paths["ws"] / "train" / "cc").exists()
    finally:
        kill(proc)
    with caplog.at_level("WARNING"):
        assert run_cli(*_train_args(paths, "cc")) == 0
    assert "took over the stale lock" in caplog.text and (paths["ws"] / "dictionaries" / "cc" / "cfg.json").exists()


def test_rebuilding_the_token_windows_names_what_it_leaves_stale(paths, capsys, caplog):
    assert run_cli(*_cache_args(paths)) == 0
    tokens = ["tokens", "-m", paths["model"], "-w", str(paths["ws"]), "--corpus", paths["corpus"], "--ctx-len", "32",
              "--n-tokens", "512"]
    capsys.readouterr()
    assert run_cli(*tokens) == 2
    assert "latents/base" in _out(capsys)
    with caplog.at_level("WARNING"):
        assert run_cli(*tokens, "--overwrite") == 0
    assert "stale now" in caplog.text and "latents/base" in caplog.text
    assert run_cli(*_interp_args(paths)) == 2  # the store's windows are gone: refused
    assert "token windows" in _out(capsys)
