"""One writer per artifact: a lock file that names the process writing it.

A writer holds the lock file of its artifact while it runs (`hold`): the file holds the
writer's PID, host, command line and start time, and an OS lock (`flock`) that the kernel
drops when the process ends, however it ends (an exception, Ctrl-C, SIGKILL). A second
writer stops with an `ArtifactError` that names the holder. A lock file left by a process
that died is taken over, and said so. The file is removed when the holder lets go.

Locks are reentrant within one process: a stage that holds its artifact's lock can call a
function that takes the same lock.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import shlex
import socket
import sys
from pathlib import Path
from typing import Any, Iterator

from .errors import ArtifactError

try:
    import fcntl
except ImportError:  # Windows: the file still names the writer, but nothing stops a second one
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
"""The lock file of an artifact directory outside a workspace (`--output-dir`, `--out`)."""

_held: dict[str, list[Any]] = {}  # resolved lock path -> [fd, depth]: this process's locks


def command_line(argv: list[str] | None = None) -> str:
    """The command line of this process as a user would type it (`saelab train --name x`)."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        argv[0] = Path(argv[0]).name
    return shlex.join(argv)


def holder_text(info: dict[str, Any] | None) -> str:
    """`PID 123 on host, since 12:00:01: saelab cache -d full`, from a lock file's content."""
    if not info:
        return "a process that has not written its name yet"
    since = str(info.get("since", "?"))[:19].replace("T", " ")
    return f"PID {info.get('pid')} on {info.get('host')}, since {since}: {info.get('command')}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _read(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    try:
        info = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def read_holder(path: str | os.PathLike) -> dict[str, Any] | None:
    """What the lock file at `path` says about its holder (None: no such file, or empty)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _read(fd)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    """Take the OS lock of `fd` without waiting; False when another process holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    """`path` still names the file open as `fd` (a holder that let go removes its file; one who opened it
    just before then holds a lock on a file nobody else will see)."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _acquire(path: Path, artifact: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            holder = _read(fd)
            os.close(fd)
            raise ArtifactError(
                f"{artifact} is being written by another saelab process ({holder_text(holder)}); wait for it to "
                f"finish or stop it, or write elsewhere (another --name or output directory). Lock file: {path}")
        if not _same_file(fd, path):
            os.close(fd)
            continue
        previous = _read(fd)
        if previous:
            pid, host = previous.get("pid"), previous.get("host")
            gone = (f"PID {pid} is not running" if host == socket.gethostname() and isinstance(pid, int)
                    and not _pid_alive(pid) else "it no longer holds the lock")
            log.warning("%s: took over the stale lock left by %s (%s)", artifact, holder_text(previous), gone)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command_line(),
                "since": datetime.datetime.now().isoformat(timespec="seconds"), "artifact": artifact}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
        return fd
    raise ArtifactError(f"{artifact}: could not take the lock file {path} (it kept being replaced); try again.")


@contextlib.contextmanager
def hold(path: str | os.PathLike, artifact: str) -> Iterator[Path]:
    """Hold the lock file at `path` for the block: the one writer of `artifact` (a path or a name, for
    messages). Raises `ArtifactError` naming the holder when another process writes it.

    Example:
        >>> with hold(ws.root / ".locks" / "latents" / "full.lock", "latents/full"):
        ...     write_the_store()
    """
    path = Path(path)
    key = os.path.abspath(path)
    if key in _held:  # this process holds it already: an inner call of the same writer
        _held[key][1] += 1
        try:
            yield path
        finally:
            _held[key][1] -= 1
        return
    fd = _acquire(path, artifact)
    _held[key] = [fd, 1]
    try:
        yield path
    finally:
        del _held[key]
        try:
            if _same_file(fd, path):
                path.unlink()
        finally:
            os.close(fd)


def hold_directory(directory: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """Hold the lock of an artifact directory outside a workspace: `directory/.lock`."""
    directory = Path(directory)
    return hold(directory / LOCK_NAME, str(directory))


__all__ = ["LOCK_NAME", "command_line", "hold", "hold_directory", "holder_text", "read_holder"]
