"""Running under `torchrun`: which process this is, and the few collectives the long stages share.

saelab joins the process group torchrun describes in its environment (`RANK`, `WORLD_SIZE`,
`MASTER_ADDR`, …): nccl where the process has a GPU, gloo on CPU. A stage splits its work by
rank (`block`), reduces its sums with `all_reduce_sum` (exact sums: counts in int64, float sums in
float64 where the result must not depend on the rank count beyond rounding), and lets rank 0 alone
write what is written once. Without torchrun every function here is the single-process identity,
so a stage has one code path.

Example:
    >>> rank, world = init_from_env()        # (0, 1) without torchrun
    >>> lo, hi = block(n_windows, rank, world)
    >>> totals = all_reduce_sum(torch.tensor([err, var], dtype=torch.float64))
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def active() -> bool:
    """Whether this process is one rank of an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) without a process group."""
    if active():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes what is written once, logs and draws progress."""
    return rank_and_world()[0] == 0


def init_from_env(device: str | torch.device | None = None) -> tuple[int, int]:
    """Join the process group torchrun describes (WORLD_SIZE > 1) unless one is initialised; return (rank, world).

    The backend is nccl when `device` is a CUDA device (or, with no device given, when CUDA is available), gloo
    otherwise. Under torchrun each rank's CUDA device is `cuda:LOCAL_RANK` (see `local_device`)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not active():
        cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return rank_and_world()


def local_device(device: str | torch.device) -> torch.device:
    """`cuda` → `cuda:LOCAL_RANK` under torchrun (one GPU per process); any other device unchanged."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and active():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def barrier() -> None:
    if active():
        dist.barrier()


def block(n: int, rank: int, world: int) -> tuple[int, int]:
    """[lo, hi): rank's contiguous share of n items (the first n % world ranks take one more)."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum `t` over ranks, in place, and return it (unchanged without a process group). Every rank gets the same
    result. Integer tensors sum exactly; give float64 for sums that must not depend on the rank count."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over ranks, in place (a bool OR: give it as uint8)."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def all_reduce_min(t: torch.Tensor) -> torch.Tensor:
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank (a small picklable value: a decision, a path; never file contents)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (small values: counts, error messages)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


__all__ = ["active", "all_gather_objects", "all_reduce_max", "all_reduce_min", "all_reduce_sum", "barrier", "block",
           "broadcast_object", "init_from_env", "is_main", "local_device", "rank_and_world"]
