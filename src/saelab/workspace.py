"""A workspace: one directory that holds every artifact of a run (DESIGN.md §3)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WORKSPACE = "saelab-workspace"


@dataclass(frozen=True)
class Workspace:
    """Paths of the artifacts in a workspace directory."""

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

    def dictionary(self, name: str) -> Path:
        return self.root / "dictionaries" / name

    def latents(self, name: str) -> Path:
        return self.root / "latents" / name

    def evals(self, name: str) -> Path:
        return self.root / "evals" / name
