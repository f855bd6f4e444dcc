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


# --- readers and writers that answer in one line ------------------------------------------------------------


@pytest.mark.parametrize("data, message", [
    (b"{oops", "not valid JSON"),
    (b'\xff\xfe{"a": 1}', "not UTF-8 text"),
])
def test_read_json_names_the_file_and_what_it_should_hold(tmp_path, data, message):
    from saelab._io import read_json
    from saelab.errors import FormatError

    path = tmp_path / "cfg.json"
    path.write_bytes(data)
    with pytest.raises(FormatError, match=message) as e:
        read_json(path, "a dictionary's config")
    assert str(path) in str(e.value) and "expected a dictionary's config" in str(e.value)
    assert "\n" not in str(e.value)
    assert isinstance(e.value, ValueError)  # code that catches a JSON ValueError still does


def test_read_json_object_refuses_another_json_type(tmp_path):
    from saelab._io import read_json, read_json_object
    from saelab.errors import FileAccessError, FormatError

    path = tmp_path / "manifest.json"
    path.write_text("[1, 2]")
    assert read_json(path) == [1, 2]
    with pytest.raises(FormatError, match=r"holds a JSON list; expected a manifest \(a JSON object\)"):
        read_json_object(path, "a manifest")
    path.write_text('{"a": 1}')
    assert read_json_object(path) == {"a": 1}
    with pytest.raises(FileAccessError, match="does not exist") as e:
        read_json(tmp_path / "missing.json")
    assert isinstance(e.value, OSError)  # code that handles a missing file still does


def test_written_files_follow_the_umask(tmp_path):
    import os
    import stat

    from saelab._io import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {})
        os.umask(0o077)
        write_json(tmp_path / "b.json", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644  # mkstemp alone gives 0o600
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600


def test_a_failed_write_names_the_target_and_leaves_nothing(tmp_path):
    import errno

    from saelab._io import atomic_path
    from saelab.errors import FileAccessError

    target = tmp_path / "out" / "weights.bin"
    with pytest.raises(FileAccessError, match="no space left on the device") as e:
        with atomic_path(target) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert str(target) in str(e.value) and ".tmp" not in str(e.value)
    assert list((tmp_path / "out").iterdir()) == []

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FileAccessError, match=f"{blocker} is a file, where a directory is needed"):
        with atomic_path(blocker / "sub" / "a.json"):
            pass


def test_an_output_directory_that_is_a_file_is_refused_before_any_work(tmp_path):
    from saelab._io import check_output_dir
    from saelab.errors import FileAccessError

    (tmp_path / "f").write_text("x")
    assert check_output_dir(tmp_path / "new" / "dir", "--out") == tmp_path / "new" / "dir"
    with pytest.raises(FileAccessError, match=r"--out: got .*, which is a file; expected a directory"):
        check_output_dir(tmp_path / "f", "--out")
    with pytest.raises(FileAccessError, match=r"-o: got .*, which lies under .*f, a file"):
        check_output_dir(tmp_path / "f" / "x", "-o")


@pytest.mark.parametrize("error, message", [
    (PermissionError(13, "Permission denied", "/ws/tokens"), "/ws/tokens: permission denied; give yourself"),
    (OSError(30, "Read-only file system", "/ws"), "/ws: is on a read-only file system; choose a writable"),
    (OSError(28, "No space left on device"), "no space left on the device; free some space"),
    (IsADirectoryError(21, "Is a directory", "/ws/x"), "/ws/x: is a directory; expected a file"),
    (OSError(5, "Input/output error", "/ws/y"), "/ws/y: Input/output error."),
])
def test_file_errors_say_what_to_do(error, message):
    from saelab.errors import file_error

    assert message in str(file_error(error))


def test_a_disk_that_fills_mid_write_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    """torch.save reports a failed write as a RuntimeError with no errno (this message is what it raised when a write
    hit the file-size limit, RLIMIT_FSIZE); with the filesystem reporting no room, atomic_path names the cause and
    leaves neither the temporary file nor a half-written target. The same error on a disk with room passes through."""
    import os

    from saelab import _io
    from saelab.errors import FileAccessError

    target = tmp_path / "train" / "checkpoint.pt"
    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    with pytest.raises(RuntimeError, match="unexpected pos"):
        with _io.atomic_path(target):
            raise torch_error
    free = os.statvfs_result((4096, 4096, 10, 0, 0, 10, 0, 0, 0, 255))  # f_bavail 0
    monkeypatch.setattr(_io.os, "statvfs", lambda _: free)
    with pytest.raises(FileAccessError, match="no space left on the device; free some space") as e:
        with _io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half a checkpoint")
            raise torch_error
    assert str(target) in str(e.value) and ".tmp" not in str(e.value)
    assert list(target.parent.iterdir()) == []
