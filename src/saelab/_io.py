"""Atomic writes and the cfg.json written beside every artifact.

A write goes to a temporary name in the same directory, is flushed and fsync'ed, then
renamed over the target: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import FileAccessError, FormatError, file_error, first_line

CFG_NAME = "cfg.json"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    The file gets the mode a plain `open` would give it (0o666 less the umask), not mkstemp's 0o600. A
    directory that cannot be made or written raises FileAccessError naming `path` (not the temporary name).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise file_error(e, action="write") from e
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise file_error(e, path.parent, "write") from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, umask_mode(0o666))
        os.replace(tmp_path, path)
    except OSError as e:
        named = {os.fsdecode(n) for n in (e.filename, e.filename2) if isinstance(n, (str, bytes, os.PathLike))}
        if str(tmp_path) not in named and not _disk_full(tmp_path.parent):
            raise
        raise file_error(e, path, "write") from e  # a full disk while writing, a target that is a directory
    except Exception as e:
        # torch.save and safetensors report a full disk as RuntimeError / SafetensorError with no errno
        # ("unexpected pos 704 vs 598"): when the disk has no room left, say so instead
        if not _disk_full(tmp_path.parent):
            raise
        raise file_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path, "write") from e
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


FULL_BELOW = 1 << 20
"""A filesystem with fewer free bytes than this (1 MiB) counts as full when a write fails there."""


def _disk_full(directory: Path) -> bool:
    """Whether the filesystem holding `directory` has (almost) no room left for this process."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < FULL_BELOW


def umask_mode(mode: int) -> int:
    """`mode` less the process's umask: what `open` (0o666) or `mkdir` (0o777) would give a new file or directory,
    for one made by mkstemp / mkdtemp (0o600 / 0o700, unreadable by others)."""
    return mode & ~_umask()


def _umask() -> int:
    """The process's umask: from /proc on Linux, else by setting it and putting it back at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def check_output_dir(path: str | os.PathLike, arg: str) -> Path:
    """`path` as a directory to write into (made when missing), refused before any work when it cannot be one: it
    is a file, or lies under one. FileAccessError names `arg` (the option that gave it) and the file in the way."""
    path = Path(path).expanduser()
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        where = "is a file" if blocker == path else f"lies under {blocker}, a file"
        raise FileAccessError(f"{arg}: got {str(path)!r}, which {where}; expected a directory (made when missing): "
                              "choose another path, or move the file away.")
    return path


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike, what: str = "") -> Any:
    """The JSON value in the file at `path`. A file that is not UTF-8 JSON raises FormatError and one that
    cannot be read FileAccessError, each naming the path and `what` it should hold (e.g. "a dictionary's
    config")."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise file_error(e, path, "read") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        kind = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else "not valid JSON"
        raise FormatError(f"{path}: {kind} ({first_line(e)}); expected {what or 'a JSON file'}. {_REMAKE}") from None


def read_json_object(path: str | os.PathLike, what: str = "") -> dict[str, Any]:
    """`read_json` for a file that must hold a JSON object (every cfg.json, manifest.json, metrics.json)."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise FormatError(f"{path}: holds a JSON {json_type(data)}; expected {what or 'a JSON object'} (a JSON "
                          f"object). {_REMAKE}")
    return data


_REMAKE = ("The file is damaged or was not written by saelab: restore it, or make it again (the command that wrote "
           "it, with --overwrite).")


def json_type(value: Any) -> str:
    """JSON's name for the type of a parsed value: object, list, string, number, boolean, null."""
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number",
             type(None): "null"}
    return names.get(type(value), type(value).__name__)


def json_safe(obj: Any) -> Any:
    """`obj` as it reads back from JSON (tuples become lists, paths strings), to compare with a stored file."""
    return json.loads(json.dumps(obj, default=_json_default))


def cfg_matches(directory: str | os.PathLike, want: dict[str, Any]) -> bool:
    """`directory/cfg.json` exists and equals `want` (compared as JSON) on every key of `want`: the stored
    result was made from the same inputs, so a resumed run can keep it."""
    path = Path(directory) / CFG_NAME
    if not path.exists():
        return False
    cfg, want = read_json_object(path, "an artifact's config"), json_safe(want)
    return all(cfg.get(k) == v for k, v in want.items())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@functools.lru_cache(maxsize=1)
def source_commit() -> str | None:
    """The git commit saelab runs from ("+dirty" with uncommitted changes), when it runs from a checkout.

    The package version stays 0.1.0 from commit to commit; the commit is what says which code made a result.
    None for an installed wheel (even one inside some other git repository), without git, or if git does not
    answer within 5 s.
    """
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(here), *a], capture_output=True, text=True,  # noqa: E731
                                        timeout=5)
        # saelab's own files must be tracked there: an installed copy under a user's repository is not a checkout
        if run("ls-files", "--error-unmatch", "__init__.py").returncode != 0:
            return None
        head = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no", "--", ".").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def versions() -> dict[str, str]:
    """Versions of saelab (and its git commit, from a checkout) and the libraries that shape its numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("saelab", "torch", "transformers", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    commit = source_commit()
    if commit is not None:
        out["saelab_commit"] = commit
    return out


def write_cfg(directory: str | os.PathLike, cfg: dict[str, Any]) -> None:
    """Write `cfg.json` (with library versions added) into `directory`, atomically."""
    write_json(Path(directory) / CFG_NAME, {**cfg, "versions": versions()})


def state_dict_hash(module: Any) -> str:
    """sha256 (16 hex) of a module's tensors (names, dtypes, shapes, bytes): its weights' identity."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

