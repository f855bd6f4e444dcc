"""Every bad input answered in one line: for each command and each kind of bad input (invalid JSON, a wrong JSON
type, bytes that are not UTF-8, a truncated file, a path that is a file, a read-only directory, a spec out of
range, options that contradict the workspace, a name that leaves the workspace), `saelab` exits with code 2,
prints exactly one line on stderr and no traceback, and changes nothing on disk.

One small workspace (a tiny Llama, its token windows, a trained dictionary, its latent store) is built once; each
case works on a copy of it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from saelab.cli import main
from tests.conftest import corpus_file, save_model

LOCKS = ".locks"
DICT = "tiny"  # the workspace's dictionary (and latent store)
HP = "resid_post.1"


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


def _run(capsys, *args) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def base(tiny_llama, tmp_path_factory):
    """root/model, root/corpus.txt and root/ws: windows, the dictionary `tiny` at resid_post.1, its latent store."""
    root = tmp_path_factory.mktemp("bad-input")
    model = save_model(tiny_llama, root / "model")
    corpus = corpus_file(root, 120)
    ws = root / "ws"
    for argv in (["tokens", "-m", model, "-w", ws, "--corpus", corpus, "--ctx-len", "32", "--n-tokens", "3072"],
                 ["train", "-m", model, "-w", ws, "-H", HP, "--d-sae", "64", "--k", "4", "--n-tokens", "1024",
                  "--batch-size", "4", "--name", DICT, "--dtype", "float32", "--checkpoint-every", "2"],
                 ["cache", "-m", model, "-w", ws, "-d", DICT, "--dtype", "float32"]):
        _quiet(argv)
    return root


def _quiet(argv: list) -> None:
    """Run a setup command that must succeed."""
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        assert not e.code, argv


@dataclass
class Env:
    """One case's directory (a copy of `base`): `root/ws` is the workspace, `root/model` the model."""

    root: Path

    @property
    def ws(self) -> Path:
        return self.root / "ws"

    @property
    def model(self) -> Path:
        return self.root / "model"

    def write(self, rel: str, data: bytes | str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def truncate(self, rel: str, keep: int = 100) -> None:
        path = self.root / rel
        path.write_bytes(path.read_bytes()[:keep])


@pytest.fixture
def env(base, tmp_path) -> Env:
    root = tmp_path / "case"
    shutil.copytree(base, root, symlinks=True)
    return Env(root)


def tree_hash(root: Path) -> str:
    """Every path under `root` with its kind, mode and bytes: any change on disk changes it. The workspace's
    `.locks/` (where a writer says it is running; emptied when it stops) is bookkeeping, not an artifact."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if LOCKS not in p.relative_to(root).parts):
        st = path.lstat()
        h.update(f"{path.relative_to(root)}|{stat.S_IFMT(st.st_mode)}|{stat.S_IMODE(st.st_mode):o}".encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def assert_one_line(code: int, err: str, needle: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]


Setup = Callable[[Env], object]
Argv = Callable[[Env], list]


@dataclass
class Case:
    id: str
    argv: Argv
    needle: str
    setup: Setup | None = None


def _m(e: Env) -> list:
    return ["-m", e.model, "--dtype", "float32"]


EVAL = ["--n-tokens", "256", "--ce-n-tokens", "64", "--metrics", "reconstruction"]

CASES = [
    # a corpus file that cannot be read
    Case("corpus: a line that is not JSON", lambda e: ["corpus", e.write("c.jsonl", '{"text": "a b"}\nnot json\n')],
         "line 2: not valid JSON"),
    Case("corpus: bytes that are not UTF-8", lambda e: ["corpus", e.write("c.jsonl", b'{"text": "\xff\xfe"}\n')],
         "line 1: not UTF-8"),
    Case("corpus: a row that is a list", lambda e: ["corpus", e.write("c.jsonl", '["a", "b"]\n')],
         "line 1: a JSON list; expected one JSON object per line"),
    Case("corpus: a row that is a string", lambda e: ["corpus", e.write("c.jsonl", '"text"\n')],
         "a JSON string; expected one JSON object"),
    Case("corpus: a parquet file that is not parquet", lambda e: ["corpus", e.write("c.parquet", "PAR1 garbage")],
         "not a readable parquet file"),
    Case("tokens --overwrite: a corpus line that is not JSON (the windows are kept)",
         lambda e: ["tokens", "-m", e.model, "-w", e.ws, "--corpus", e.write("c.jsonl", "{oops\n"),
                    "--ctx-len", "32", "--n-tokens", "1024", "--overwrite"],
         "line 1: not valid JSON"),
    # a dictionary's cfg.json that cannot be read
    Case("dict info: cfg.json not JSON", lambda e: ["dict", "info", e.ws / "dictionaries" / DICT], "not valid JSON",
         lambda e: e.write(f"ws/dictionaries/{DICT}/cfg.json", "{bad")),
    Case("dict info: cfg.json a JSON list", lambda e: ["dict", "info", e.ws / "dictionaries" / DICT],
         "holds a JSON list; expected a saelab dictionary's config",
         lambda e: e.write(f"ws/dictionaries/{DICT}/cfg.json", "[1, 2]")),
    Case("dict info: cfg.json not UTF-8", lambda e: ["dict", "info", e.ws / "dictionaries" / DICT], "not UTF-8",
         lambda e: e.write(f"ws/dictionaries/{DICT}/cfg.json", b"\xff\xfe{}")),
    Case("dict info: truncated weights", lambda e: ["dict", "info", e.ws / "dictionaries" / DICT], "truncated",
         lambda e: e.truncate(f"ws/dictionaries/{DICT}/weights.safetensors")),
    Case("eval: cfg.json a JSON list", lambda e: ["eval", *_m(e), "-w", e.ws, "-d", DICT, *EVAL], "holds a JSON list",
         lambda e: e.write(f"ws/dictionaries/{DICT}/cfg.json", "[]")),
    Case("compare: cfg.json not JSON",
         lambda e: ["compare", *_m(e), "-w", e.ws, "--a", DICT, "--b", "dense:pca", "-o", e.root / "cmp", *EVAL],
         "not valid JSON", lambda e: e.write(f"ws/dictionaries/{DICT}/cfg.json", "{")),
    # the workspace's own files
    Case("eval: the token windows' cfg.json a JSON list", lambda e: ["eval", *_m(e), "-w", e.ws, "-d", DICT, *EVAL],
         "holds a JSON list; expected the token windows' config", lambda e: e.write("ws/tokens/cfg.json", "[]")),
    Case("train: truncated token windows",
         lambda e: ["train", *_m(e), "-w", e.ws, "-H", HP, "--d-sae", "64", "--name", "other", "--n-tokens", "256"],
         "the token windows are damaged", lambda e: e.truncate("ws/tokens/tokens.safetensors")),
    Case("cooc: manifest.json not JSON", lambda e: ["cooc", "-w", e.ws, "-d", DICT], "manifest.json: not valid JSON",
         lambda e: e.write(f"ws/latents/{DICT}/manifest.json", "{x")),
    Case("cooc: manifest.json a JSON list", lambda e: ["cooc", "-w", e.ws, "-d", DICT], "holds a JSON list",
         lambda e: e.write(f"ws/latents/{DICT}/manifest.json", "[]")),
    Case("cooc: manifest.json without its shards", lambda e: ["cooc", "-w", e.ws, "-d", DICT],
         "not a latent store's manifest", lambda e: e.write(f"ws/latents/{DICT}/manifest.json", '{"shards": [{}]}')),
    Case("train --resume: a truncated checkpoint",
         lambda e: ["train", *_m(e), "-w", e.ws, "-H", HP, "--d-sae", "64", "--k", "4", "--n-tokens", "1024",
                    "--batch-size", "4", "--name", DICT, "--checkpoint-every", "2", "--resume"],
         "is truncated or damaged", lambda e: e.truncate(f"ws/train/{DICT}/checkpoint.pt", 1000)),
    Case("report: after the token windows were rebuilt under the store",
         lambda e: ["report", e.ws, "--model", "none"], "stale",
         lambda e: _quiet(["tokens", "-m", e.model, "-w", e.ws, "--corpus", e.root / "corpus.txt", "--ctx-len", "32",
                           "--n-tokens", "2048", "--overwrite"])),
    # paths that are files
    Case("tokens: a workspace that is a file", lambda e: ["tokens", "-m", e.model, "-w", e.write("f", "x")],
         "--workspace: got"),
    Case("train: a workspace under a file", lambda e: ["train", *_m(e), "-w", e.write("f", "x") / "ws"],
         "lies under"),
    Case("compare -o: an existing file",
         lambda e: ["compare", *_m(e), "-w", e.ws, "--a", DICT, "--b", "dense:pca", "-o", e.write("f", "x"), *EVAL],
         "--output-dir: got"),
    Case("eval --out: an existing file",
         lambda e: ["eval", *_m(e), "-w", e.ws, "-d", DICT, "--out", e.write("f", "x"), *EVAL], "--out: got"),
    Case("report --out: an existing file", lambda e: ["report", e.ws, "--out", e.write("f", "x"), "--model", "none"],
         "--out: got"),
    Case("finetune -o: an existing file", lambda e: ["finetune", "-m", e.model, "-o", e.write("f", "x")],
         "--output-dir: got"),
    # numbers out of range
    *[Case(f"compare --b {spec}",
           lambda e, spec=spec: ["compare", *_m(e), "-w", e.ws, "--a", DICT, "--b", spec, "-o", e.root / "cmp", *EVAL],
           needle) for spec, needle in [("dense:pca:0", "from 1 to d_in"), ("dense:pca:-3", "from 1 to d_in"),
                                        ("dense:pca:many", "from 1 to d_in"),
                                        ("dense:pca:100000", "from 1 to 32 (the dictionary's d_in)"),
                                        ("dense:linear:3", "expected dense:pca"), ("dense:svd", "expected dense:pca")]],
    Case("eval --ce-n-tokens 0", lambda e: ["eval", *_m(e), "-w", e.ws, "-d", DICT, "--ce-n-tokens", "0"],
         "to leave them out, drop downstream from the metrics (--metrics"),
    # options that contradict the workspace, or each other
    Case("train -c: other windows than the workspace's",
         lambda e: ["train", *_m(e), "-w", e.ws, "-c", "sotu", "--name", "other"],
         "--corpus: got 'sotu', but the workspace's token windows"),
    Case("train --ctx-len: other windows than the workspace's",
         lambda e: ["train", *_m(e), "-w", e.ws, "--ctx-len", "64", "--name", "other"], "--ctx-len: got 64"),
    Case("activations -H: the hookpoint is named before the windows",
         lambda e: ["activations", *_m(e), "-w", e.ws, "-H", "nope.9"], "hookpoint 'nope.9' is not on this model"),
    Case("autointerp: another subject model than the store's",
         lambda e: ["autointerp", "smollm2-135m", DICT, "-w", e.ws, "--explainer", "top-tokens"],
         "model: got 'smollm2-135m', but the latent store"),
    Case("autointerp-merge: one run twice", lambda e: ["autointerp-merge", "a", "a", "--name", "m", "-w", e.ws],
         "is given more than once", lambda e: (e.ws / "interp" / "a" / "explanations").mkdir(parents=True)),
    # what the command line parser refuses: one line too, not a usage box
    Case("train --d-sae: not a number", lambda e: ["train", "--d-sae", "abc"],
         "saelab train: Invalid value for '--d-sae'"),
    Case("train: an unknown option", lambda e: ["train", "--bogus"], "No such option: --bogus"),
    Case("an unknown command", lambda e: ["nope"], "No such command 'nope'"),
    # names that would leave the workspace
    Case("train --name ..", lambda e: ["train", *_m(e), "-w", e.ws, "--name", "../escape"], "no path separator"),
    Case("autointerp-merge --name ..",
         lambda e: ["autointerp-merge", "a", "b", "--name", "../escape", "-w", e.ws], "name"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case: Case, env: Env, capsys):
    if case.setup is not None:
        case.setup(env)
    argv = case.argv(env)  # may write the bad file itself
    before = tree_hash(env.root)
    code, _, err = _run(capsys, *argv)
    assert_one_line(code, err, case.needle)
    assert tree_hash(env.root) == before, "the command changed files on disk"


READ_ONLY = [
    ("tokens", lambda e: ["tokens", "-m", e.model, "-w", e.ws, "--corpus", e.root / "corpus.txt", "--ctx-len", "32",
                          "--n-tokens", "2048", "--overwrite"]),
    ("train", lambda e: ["train", *_m(e), "-w", e.ws, "-H", HP, "--d-sae", "64", "--k", "4", "--n-tokens", "1024",
                         "--batch-size", "4", "--name", "other"]),
    ("cooc", lambda e: ["cooc", "-w", e.ws, "-d", DICT]),
    ("report", lambda e: ["report", e.ws, "--model", "none"]),
]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only directories")
@pytest.mark.parametrize("command, argv", READ_ONLY, ids=[c for c, _ in READ_ONLY])
def test_a_read_only_workspace_is_one_line(command, argv, env: Env, capsys):
    dirs = [env.ws, *(p for p in env.ws.rglob("*") if p.is_dir())]
    for d in dirs:
        d.chmod(0o555)
    try:
        before = tree_hash(env.root)
        code, _, err = _run(capsys, *argv(env))
        assert_one_line(code, err, "permission denied")
        assert tree_hash(env.root) == before
    finally:
        for d in dirs:
            d.chmod(0o755)


def test_a_file_system_error_anywhere_is_one_line(env: Env, capsys, monkeypatch):
    """A write refused by the system (here: a read-only file system, simulated for root too) is one line that
    names the directory and what to do, whatever writer met it."""
    import errno
    import tempfile

    def refuse(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", os.path.join(dir or ".", ".x.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    code, _, err = _run(capsys, "cooc", "-w", env.ws, "-d", DICT)
    assert_one_line(code, err, "read-only file system; choose a writable workspace")
    assert ".x.tmp" not in err  # the directory, not the temporary name


def test_a_bug_is_one_line_with_exit_code_1_and_v_shows_the_traceback(env: Env, capsys, monkeypatch):
    import saelab.coders

    def broken(*args, **kwargs):
        raise RuntimeError("something saelab did not expect")

    monkeypatch.setattr(saelab.coders, "describe_dictionary", broken)
    code, _, err = _run(capsys, "dict", "info", env.ws / "dictionaries" / DICT)
    assert code == 1 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "internal error: RuntimeError: something saelab did not expect" in lines[0]
    assert "run with -v" in lines[0]
    code, _, err = _run(capsys, "-v", "dict", "info", env.ws / "dictionaries" / DICT)
    assert code == 1 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error: internal error")


ONE_PROCESS = [lambda e: ["match", "--a", DICT, "--b", DICT, "-w", e.ws], lambda e: ["report", e.ws],
               lambda e: ["sfal", "-d", DICT, "-w", e.ws]]


@pytest.mark.parametrize("argv", ONE_PROCESS, ids=["match", "report", "sfal"])
def test_a_one_process_command_under_torchrun_is_one_line(argv, env: Env, capsys, monkeypatch):
    """Under torchrun (WORLD_SIZE > 1) a command that does not split its work would run whole on every rank and
    write the same artifacts: it stops before any work, naming the commands that do run under torchrun (and, as
    every error under torchrun, the rank that printed it)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    before = tree_hash(env.root)
    command = argv(env)
    code, _, err = _run(capsys, *command)
    assert_one_line(code, err, f"saelab {command[0]} runs in one process, not under torchrun (got WORLD_SIZE=2)")
    assert err.startswith("error: [rank 1 of 2] saelab") and "train, cache, eval, compare, cooc, diff" in err
    assert tree_hash(env.root) == before
