"""How a training run spreads over the ranks of a torchrun process group.

`data` (the default): each rank holds its rows of every step (`distributed.DataParallel` reduces the losses,
selections, dead-latent counts and gradients over the ranks), so every rank keeps the same weights and the
result is the one-process result up to rounding; rank 0 writes the checkpoint, log and dictionaries.
Up to rounding means with a float32 selection (`encoder_dtype="float32"`): a bf16 selection product (the
`auto` choice on GPUs and bf16 CPUs) rounds differently on a rank's rows than on the whole batch, so BatchTopK
may keep another latent at a near-tie and the run drifts off the one-process run (an equally good run, not the
same one; measured on the diff test's crosscoder: W_enc within 2e-6 in float32, 0.17 apart in bf16).
`dictionaries` (`--distribute-dictionaries`): each rank trains every world-th dictionary of the run on every
window, with its own checkpoint and log (`checkpoint.rank-R.pt`), and saves its own dictionaries.

The workspace must be on a filesystem every rank sees (rank 0 writes, the others read it back).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal

import torch

from ..activations.buffer import ActivationBuffer
from ..distributed import LOCAL, Local, broadcast_object, data_parallel, rank_and_world, rank_file
from ..errors import ConfigError, choices_message
from .checkpoint import CHECKPOINT_NAME
from .config import DictionarySpec, TrainConfig
from .loop import LOG_NAME, RunFiles
from .source import ReadWindows

Parallel = Literal["data", "dictionaries"]
"""How a run spreads over the ranks of a process group: `data` (each rank its rows of every step) or `dictionaries`
(each rank its share of the dictionaries, every step whole). One process: either is the plain run."""
PARALLEL = ("data", "dictionaries")


def rank_dictionaries(config: TrainConfig, parallel: Parallel, rank: int, world: int) -> tuple[DictionarySpec, ...]:
    """The dictionaries rank `rank` of `world` trains: all of them, or with `dictionaries` every world-th from its
    rank on (round robin, so widths and hookpoints mix)."""
    if parallel not in PARALLEL:
        raise ConfigError(choices_message("parallel", parallel, PARALLEL))
    if parallel == "data" or world == 1:
        return config.dictionaries
    n = len(config.dictionaries)
    if world > n:
        raise ConfigError(f"--distribute-dictionaries: {world} ranks but {n} dictionar{'y' if n == 1 else 'ies'}; "
                          f"start at most {n} process{'' if n == 1 else 'es'} (torchrun --nproc_per_node {n}), train "
                          "more dictionaries in the run (repeat --d-sae or --hookpoint), or drop "
                          "--distribute-dictionaries to train data parallel.")
    return config.dictionaries[rank::world]


def batch_ranks(parallel: Parallel) -> Local:
    """How a step's batch is reduced: over every rank (`data`, under a process group), or not at all."""
    return data_parallel() if parallel == "data" else LOCAL


def run_files(run_dir: Path, parallel: Parallel) -> RunFiles | None:
    """What this process writes of the run: rank 0 for every rank (`data`), or each rank its own files
    (`dictionaries`: `checkpoint.rank-R.pt`, `log.rank-R.jsonl`; rank 0 the plain names)."""
    rank, world = rank_and_world()
    if parallel == "data" or world == 1:
        return RunFiles(run_dir / CHECKPOINT_NAME, run_dir / LOG_NAME, world) if rank == 0 else None
    return RunFiles(run_dir / rank_file(CHECKPOINT_NAME, rank), run_dir / rank_file(LOG_NAME, rank), world, parallel)


def written_by_rank0(write: Callable[[ReadWindows], ActivationBuffer], read: ReadWindows,
                     path: Path) -> ActivationBuffer:
    """Rank 0 writes the activation buffer (`write(read)`) while the other ranks wait for it. It sends a word after
    every chunk it reads, so no rank waits in one collective longer than a chunk takes (a barrier would time out
    on a long buffer: 30 min for gloo, 10 for nccl)."""
    if rank_and_world()[0] > 0:
        while not broadcast_object(None):
            pass
        return ActivationBuffer(path)

    def read_and_tell(lo: int, hi: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        out = read(lo, hi)
        broadcast_object(False)  # not finished
        return out

    buffer = write(read_and_tell)
    broadcast_object(True)
    return buffer


__all__ = ["PARALLEL", "Parallel", "batch_ranks", "rank_dictionaries", "run_files", "written_by_rank0"]
