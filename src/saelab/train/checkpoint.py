"""Checkpoints that resume exactly: every trainer's weights, Adam moments, step (the rate
schedule is a function of it), dead-latent counters and BatchTopK threshold, plus the
position in the activation stream and the RNG state. Written atomically; read with
`weights_only=True` (tensors, numbers and strings only).

A checkpoint records how many ranks wrote it (`world_size`, outside the run's fingerprint): a data-parallel
run resumes with the same number. Training draws nothing from torch's global RNG after the initialisation
(shuffles and samples have their own seeded generators), so the state saved is rank 0's and any rank may
restore it.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_path
from ..errors import ArtifactError, file_error, first_line

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class RunState:
    """Where a run is in its activation stream."""

    step: int = 0
    """Optimiser steps done (the same for every dictionary of the run)."""
    chunk: int = 0
    """Chunk of windows the next step reads (see `source.ChunkedSource`)."""
    step_in_chunk: int = 0
    """Steps of that chunk already done."""
    window_tokens: int = 0
    """Window tokens read so far (excluded positions included)."""
    text_tokens: int = 0
    """Text positions trained on so far."""

    def advance(self, steps_in_chunk: int, window_tokens: int, text_tokens: int) -> None:
        self.step += 1
        self.step_in_chunk += 1
        self.window_tokens += window_tokens
        self.text_tokens += text_tokens
        if self.step_in_chunk == steps_in_chunk:
            self.chunk, self.step_in_chunk = self.chunk + 1, 0


def config_fingerprint(config_dict: dict[str, Any]) -> str:
    """A stable JSON text of the run's config: a checkpoint resumes only the same run."""
    return json.dumps(config_dict, sort_keys=True, default=str)


def save_checkpoint(path: Path, state: RunState, trainers: dict[str, Any], fingerprint: str, world: int = 1,
                    parallel: str = "data") -> None:
    """Write the checkpoint of a run (atomic: a crash leaves the previous one). world: the run's number of ranks;
    parallel: how they share the work (`data`, or `dictionaries` for --distribute-dictionaries)."""
    payload = {"state": asdict(state), "fingerprint": fingerprint, "torch_rng": torch.get_rng_state(),
               "trainers": {name: t.state_dict() for name, t in trainers.items()}, "world_size": world,
               "parallel": parallel if world > 1 else "data"}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """The payload of the checkpoint at `path`. A truncated or damaged file raises ArtifactError saying how to go
    on; one that cannot be read at all (permissions) FileAccessError."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except OSError as e:
        raise file_error(e, path, "read") from None
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        why = first_line(e, 10_000).split(". ")[0][:160]  # torch adds advice
        raise ArtifactError(f"resume: the checkpoint {path} is truncated or damaged ({why}); the run cannot go on "
                            "from it: start it over with --overwrite.") from None
    if not isinstance(payload, dict) or not {"fingerprint", "state", "trainers", "torch_rng"} <= set(payload):
        raise ArtifactError(f"resume: {path} is not a saelab training checkpoint (no fingerprint, state and "
                            "trainers); start the run over with --overwrite, or choose another --name.")
    return payload


def check_world_size(payload: dict[str, Any], path: Path, world: int, start_over: str = "--overwrite",
                     parallel: str = "data") -> None:
    """Refuse to resume a checkpoint written by another number of ranks (or another `parallel`), naming both and
    how to go on."""
    stored = int(payload.get("world_size", 1))
    if stored != world:
        raise ArtifactError(
            f"resume: the checkpoint {path} was written by a run on {stored} rank(s), and this run has {world}; "
            f"rerun on {stored} (`torchrun --nproc_per_node {stored} ...`{', or no torchrun' if stored == 1 else ''}) "
            f"to resume it, or {start_over} to start over on {world}.")
    had, has = payload.get("parallel", "data"), parallel if world > 1 else "data"
    if had != has:
        flag = "--distribute-dictionaries"
        raise ArtifactError(f"resume: the checkpoint {path} was written {'with' if had != 'data' else 'without'} "
                            f"{flag}, and this run is {'without' if had != 'data' else 'with'} it; rerun as it was "
                            f"to resume it, or {start_over} to start over.")


def load_checkpoint(path: Path, trainers: dict[str, Any], fingerprint: str, world: int = 1,
                    parallel: str = "data") -> RunState:
    """Restore `trainers` from the checkpoint at `path`; return the stream position. world, parallel: this run's
    ranks and how they share the work, which must be the checkpoint's."""
    if not path.exists():
        raise ArtifactError(f"resume: no checkpoint at {path}; start the run over (--overwrite).")
    payload = read_checkpoint(path)
    check_world_size(payload, path, world, parallel=parallel)
    if payload["fingerprint"] != fingerprint:
        raise ArtifactError(
            f"resume: the checkpoint {path} was written by a run with another config or other token windows; "
            "resume with the same options, or start a new run under another --name."
        )
    missing = sorted(set(trainers) - set(payload["trainers"]))
    if missing:
        raise ArtifactError(f"resume: the checkpoint {path} has no state for {missing}.")
    for name, trainer in trainers.items():
        trainer.load_state_dict(payload["trainers"][name])
    torch.set_rng_state(payload["torch_rng"])
    return RunState(**payload["state"])


def fingerprint_difference(stored: str, wanted: str) -> str:
    """The settings in which two runs' fingerprints differ (`Workspace.difference`), for a refusal that names them."""
    from ..workspace import difference

    try:
        return difference(json.loads(stored), json.loads(wanted))
    except ValueError:  # a checkpoint of an older format
        return "its fingerprint differs"
