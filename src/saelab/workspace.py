"""A workspace: one directory that holds every artifact of a run (DESIGN.md §3).

The rules every writer follows, in one place:
- a name (of a dictionary, train run, latent store, eval, cooc or interp run) is one
  directory name: not empty, no path separator, no `..`, no leading dot (`check_name`), so
  every artifact lands inside the workspace;
- one writer per artifact: a writer holds `WORKSPACE/.locks/KIND/NAME.lock` while it runs
  (`Workspace.lock`, see `saelab.lock`);
- an artifact made with other settings is never written over without `overwrite`; the
  refusal names what differs (`difference`).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .lock import hold

DEFAULT_WORKSPACE = "saelab-workspace"
LOCKS = ".locks"


def name_problem(name: object) -> str | None:
    """Why `name` cannot name an artifact of a workspace, else None."""
    if not isinstance(name, str) or not name:
        return "a name cannot be empty"
    seps = {"/", "\\", os.sep, os.altsep or "/"}
    if any(s in name for s in seps):
        return "a name holds no path separator ('/' or '\\')"
    if ".." in name:
        return "a name holds no '..'"
    if name.startswith("."):
        return "a name does not start with '.'"
    if any(ord(c) < 32 for c in name):
        return "a name holds no control characters"
    return None


def check_name(name: object, what: str = "name") -> str:
    """`name`, when it can name an artifact (one directory inside the workspace); else a ConfigError."""
    problem = name_problem(name)
    if problem:
        raise ConfigError(f"{what}: got {name!r}; {problem}: it names one directory inside the workspace "
                          "(letters, digits, '-', '_', '.', e.g. sae-l6-16k).")
    return name  # type: ignore[return-value]


def is_name(text: object) -> bool:
    """Whether `text` can be an artifact name (a spec such as `org/repo` or `./dir` cannot)."""
    return name_problem(text) is None


def difference(stored: dict[str, Any], wanted: dict[str, Any], limit: int = 3) -> str:
    """The keys where `stored` (a cfg.json) differs from `wanted`, as `k: stored → wanted` (nested keys joined
    by '.'), for a refusal that names the difference. Only the keys of `wanted` are compared."""
    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) and d else None
        if items is None:
            return {prefix: d}
        out: dict[str, Any] = {}
        for k, v in items:
            out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out

    want = flat(json.loads(json.dumps(wanted, default=str)))
    have = flat(json.loads(json.dumps({k: stored.get(k) for k in wanted}, default=str)))
    diffs = [f"{k}: {have.get(k)!r} → {v!r}" for k, v in want.items() if have.get(k) != v]
    diffs += [f"{k}: {v!r} → absent" for k, v in have.items() if k not in want and v is not None]
    shown = "; ".join(d if len(d) < 120 else d[:117] + "…" for d in diffs[:limit])
    return shown + (f"; and {len(diffs) - limit} more" if len(diffs) > limit else "") if diffs else "none found"


@dataclass(frozen=True)
class Workspace:
    """Paths of the artifacts in a workspace directory. Every method that takes a name checks it
    (`check_name`): no artifact lands outside the workspace."""

    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike | None = None) -> "Workspace":
        """The workspace at `path`, else `$SAELAB_WORKSPACE`, else `./saelab-workspace`."""
        return cls(Path(path or os.environ.get("SAELAB_WORKSPACE") or DEFAULT_WORKSPACE))

    @property
    def tokens(self) -> Path:
        return self.root / "tokens"

    @property
    def activations(self) -> Path:
        return self.root / "activations"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def dictionary(self, name: str) -> Path:
        return self.root / "dictionaries" / check_name(name, "dictionary name")

    def train(self, name: str) -> Path:
        """The directory of a training run: checkpoint and JSONL log."""
        return self.root / "train" / check_name(name, "run name")

    def latents(self, name: str) -> Path:
        return self.root / "latents" / check_name(name, "store name")

    def evals(self, name: str) -> Path:
        return self.root / "evals" / check_name(name, "eval name")

    def cooc(self, name: str) -> Path:
        return self.root / "cooc" / check_name(name, "cooc name")

    def interp(self, name: str) -> Path:
        return self.root / "interp" / check_name(name, "interp run name")

    def lock(self, kind: str, name: str | None = None) -> contextlib.AbstractContextManager[Path]:
        """Hold the lock of the artifact `KIND/NAME` (or `KIND` alone: tokens, report) for a block: the one
        writer of it. Raises ArtifactError naming the process that holds it.

        Example:
            >>> with ws.lock("latents", "full"):
            ...     write_the_store()
        """
        check_name(kind, "artifact kind")
        if name is None:
            return hold(self.root / LOCKS / f"{kind}.lock", str(self.root / kind))
        return hold(self.root / LOCKS / kind / f"{check_name(name)}.lock", str(self.root / kind / name))


__all__ = ["DEFAULT_WORKSPACE", "Workspace", "check_name", "difference", "is_name", "name_problem"]
