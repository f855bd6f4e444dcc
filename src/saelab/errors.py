"""saelab's error hierarchy.

Every error a user can cause is a `SaelabError`: the CLI prints its message on one line
and exits with code 2, without a traceback. A message names the argument, what it got,
what it accepts, and how to fix it. Internal invariants use `assert`.
"""

from __future__ import annotations


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


class FormatError(SaelabError):
    """A file or directory that is not in the format saelab expected."""


class ArtifactError(SaelabError):
    """A workspace artifact that is missing, incomplete or does not match its inputs."""


def choices_message(arg: str, got: object, valid: list[str] | tuple[str, ...], hint: str = "") -> str:
    """One-line message: `arg` got `got`; the valid choices; an optional hint."""
    shown = ", ".join(valid[:40]) + (f", … ({len(valid)} in all)" if len(valid) > 40 else "")
    msg = f"{arg}: got {got!r}; expected one of: {shown}."
    return f"{msg} {hint}".strip()
