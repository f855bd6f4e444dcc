"""saelab's error hierarchy.

Every error a user can cause is a `SaelabError`: the CLI prints its message on one line
and exits with code 2, without a traceback. A message names the argument, what it got,
what it accepts, and how to fix it. A file the system refuses (an `OSError`) becomes a
`FileAccessError` the same way (`file_error`). Any other exception is a bug: one line, exit
code 1, the traceback with `saelab -v`. Internal invariants use `assert`.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class SaelabError(Exception):
    """Base class of every user-facing saelab error."""


class ConfigError(SaelabError, ValueError):
    """An argument or config field has a value saelab cannot use."""


class ModelError(SaelabError):
    """A model spec that cannot be resolved or loaded."""


class MissingPackageError(SaelabError, ImportError):
    """An optional package is needed; the message says which `pip install` fixes it."""


class HookpointError(SaelabError, KeyError):
    """A hookpoint name that does not exist on the model."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CorpusError(SaelabError):
    """A corpus spec that cannot be read, or that yields no text."""


class FormatError(SaelabError, ValueError):
    """A file or directory that is not in the format saelab expected (invalid JSON, a truncated file, …)."""


class ArtifactError(SaelabError):
    """A workspace artifact that is missing, incomplete or does not match its inputs."""


class FileAccessError(SaelabError, OSError):
    """A file or directory saelab cannot read or write: missing, a file where a directory is needed (or the
    reverse), no permission, a read-only file system, a full disk. Made from an `OSError` by `file_error`; still an
    OSError, so code that handles a missing file handles it too."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type's name when it has none), at most `limit` characters:
    what a one-line error quotes of a library's multi-line message."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]


def choices_message(arg: str, got: object, valid: list[str] | tuple[str, ...], hint: str = "") -> str:
    """One-line message: `arg` got `got`; the valid choices; an optional hint."""
    shown = ", ".join(valid[:40]) + (f", … ({len(valid)} in all)" if len(valid) > 40 else "")
    msg = f"{arg}: got {got!r}; expected one of: {shown}."
    return f"{msg} {hint}".strip()


# errno -> what went wrong and what to do about it; `file_error` fills in `{action}` (read, write)
_FIXES = {
    errno.ENOENT: "does not exist; check the path (or run the command that makes it first)",
    errno.ENOTDIR: "a part of this path is a file, not a directory; choose another path, or move the file away",
    errno.EISDIR: "is a directory; expected a file: give the file's path",
    errno.EEXIST: "already exists; choose another path, or move it away",
    errno.EACCES: "permission denied; give yourself {action} access (chmod / chown), or choose another path "
                  "(-w / --workspace, -o)",
    errno.EPERM: "operation not permitted; give yourself {action} access (chmod / chown), or choose another path "
                 "(-w / --workspace, -o)",
    errno.EROFS: "is on a read-only file system; choose a writable workspace (-w / --workspace) or output path",
    errno.ENOSPC: "no space left on the device; free some space (or choose a workspace on another disk) and run "
                  "the same command again: finished work is kept",
    errno.EDQUOT: "disk quota exceeded; free some space and run the same command again: finished work is kept",
}


def file_error(e: OSError, path: str | os.PathLike | None = None, action: str = "read/write") -> FileAccessError:
    """A one-line FileAccessError for `e`: the path (`path`, else the one `e` names), what went wrong, the fix.

    For a path under a regular file (ENOTDIR, or EEXIST from mkdir), the file in the way is named."""
    fix = _FIXES.get(e.errno) if e.errno is not None else None
    what = fix.format(action=action) if fix else e.strerror or str(e) or type(e).__name__
    where = path if path is not None else e.filename
    if where is None:
        return FileAccessError(f"{what}.")
    where = Path(os.fsdecode(where))
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in (where, *where.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            under = "" if blocker == where else f" (for {where})"
            return FileAccessError(f"{blocker} is a file, where a directory is needed{under}; choose another path "
                                   "(-w / --workspace, -o), or move the file away.")
    return FileAccessError(f"{where}: {what}.")
