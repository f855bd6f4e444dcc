"""`saelab train` resumes by default: the same options go on from the checkpoint, other options are
refused in one line naming --overwrite, and --overwrite starts over."""

from __future__ import annotations

import json

import pytest

from saelab.cli import main
from tests.conftest import corpus_file, save_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


@pytest.fixture
def paths(tiny_llama, tmp_path):
    return {"model": save_model(tiny_llama, tmp_path / "model"), "corpus": str(corpus_file(tmp_path, 120)),
            "ws": tmp_path / "ws"}


def _train(paths, capsys, *extra: str) -> tuple[int, str]:
    argv = ["train", "-m", paths["model"], "-w", str(paths["ws"]), "--corpus", paths["corpus"], "--ctx-len", "32",
            "--n-tokens", "1024", "-H", "resid_post.1", "--d-sae", "64", "--batch-size", "4", "--name", "tiny",
            "--dtype", "float32", "--checkpoint-every", "2", *extra]
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return e.value.code or 0, " ".join((out.out + out.err).split())


def _weights(paths) -> bytes:
    return (paths["ws"] / "dictionaries" / "tiny" / "weights.safetensors").read_bytes()


def test_a_rerun_resumes_and_other_options_need_overwrite(paths, capsys):
    code, _ = _train(paths, capsys, "--k", "4")
    assert code == 0
    first = _weights(paths)

    code, out = _train(paths, capsys, "--k", "4")  # the same run: resumed at its last step, nothing retrained
    assert code == 0 and "resuming" in out and _weights(paths) == first
    code, _ = _train(paths, capsys, "--k", "4", "--resume")  # the old spelling still works
    assert code == 0 and _weights(paths) == first

    code, out = _train(paths, capsys, "--k", "8")  # other options: refused, nothing touched
    assert code == 2 and "--overwrite" in out and "Traceback" not in out
    assert _weights(paths) == first

    code, _ = _train(paths, capsys, "--k", "8", "--overwrite")
    assert code == 0
    cfg = json.loads((paths["ws"] / "dictionaries" / "tiny" / "cfg.json").read_text())
    assert cfg["k"] == 8


def test_a_dictionary_without_its_checkpoint_is_not_trained_over(paths, capsys):
    assert _train(paths, capsys, "--k", "4")[0] == 0
    (paths["ws"] / "train" / "tiny" / "checkpoint.pt").unlink()
    code, out = _train(paths, capsys, "--k", "4")
    assert code == 2 and "no checkpoint to resume" in out and "--overwrite" in out
