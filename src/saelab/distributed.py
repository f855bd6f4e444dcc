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
from typing import Any, Callable, Iterable

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


class Local:
    """A batch this process holds whole: one process alone, or a rank that trains its own dictionaries on every
    token (`--distribute-dictionaries`). Every reduction over the batch is the identity; no collective runs.

    Training code reduces through such an object (`ranks.sum(t)`), so one code path serves both; `DataParallel`
    reduces over every rank."""

    rank, world = 0, 1

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Σ over the ranks that share the batch (in place)."""
        return t

    def max(self, t: torch.Tensor) -> torch.Tensor:
        """Element-wise maximum over the ranks that share the batch (in place)."""
        return t

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """[world, *t.shape]: every rank's `t` (equal shapes), in rank order."""
        return t[None]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's small picklable `obj`, in rank order."""
        return [obj]

    def sum_gradients(self, params: Iterable[torch.Tensor]) -> None:
        """Sum the parameters' gradients over the ranks, so every rank takes the same optimiser step."""


LOCAL = Local()


class DataParallel(Local):
    """A batch split over every rank of the process group (data parallel): each rank holds some of its rows,
    and the reductions run over all ranks, so every rank sees the whole batch's sums."""

    def __init__(self) -> None:
        self.rank, self.world = rank_and_world()

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(t)

    def max(self, t: torch.Tensor) -> torch.Tensor:
        return all_reduce_max(t)

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.contiguous())
        return torch.stack(parts)

    def gather_objects(self, obj: Any) -> list[Any]:
        return all_gather_objects(obj)

    def sum_gradients(self, params: Iterable[torch.Tensor]) -> None:
        # one flat buffer: one collective per step, not one per parameter
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = all_reduce_sum(torch.cat([g.reshape(-1) for g in grads]))
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))


def data_parallel() -> Local:
    """How a batch split over this process group's ranks is reduced: `DataParallel` under 2+ ranks, else `LOCAL`
    (no collective at all on a single process)."""
    return DataParallel() if rank_and_world()[1] > 1 else LOCAL


def rank_file(name: str, rank: int) -> str:
    """The file `name` of one rank where each rank writes its own: `checkpoint.pt` → `checkpoint.rank-1.pt`
    (rank 0 keeps the plain name, the one a single process writes)."""
    if rank == 0:
        return name
    stem, dot, ext = name.rpartition(".")
    return f"{stem}.rank-{rank}.{ext}" if dot else f"{name}.rank-{rank}"


def collective_device() -> torch.device:
    """Where a tensor must lie for a collective: the current CUDA device under nccl, the CPU otherwise (gloo)."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """`t` summed over ranks, on `t`'s device, whatever the backend (nccl reduces CUDA tensors, gloo CPU ones).
    Without a process group `t` itself comes back (no copy, no collective). Give int64 counts and float64 sums:
    the result then equals one process's sum exactly (counts) or up to summation order (floats)."""
    if not active():
        return t
    return all_reduce_sum(t.to(collective_device(), copy=True)).to(t.device)


def max_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """`t`'s element-wise maximum over ranks, on `t`'s device, whatever the backend (see `sum_over_ranks`)."""
    if not active():
        return t
    return all_reduce_max(t.to(collective_device(), copy=True)).to(t.device)


def on_main(fn: Callable[[], Any]) -> Any:
    """`fn()` run by rank 0 alone, its result (small, picklable) on every rank. An exception of rank 0 is raised
    on every rank (the same type and message), so no rank waits for a decision that never comes: the pattern
    for "is this artifact already there, or refused?" checks that rank 0 makes under its lock."""
    if not active():
        return fn()
    outcome: tuple[bool, Any] = (True, None)
    if is_main():
        try:
            outcome = (True, fn())
        except Exception as e:  # re-raised below, on every rank
            outcome = (False, e)
    outcome = broadcast_object(outcome)
    if not outcome[0]:
        raise outcome[1]
    return outcome[1]


__all__ = ["LOCAL", "DataParallel", "Local", "active", "all_gather_objects", "all_reduce_max", "all_reduce_sum",
           "barrier", "block", "broadcast_object", "collective_device", "data_parallel", "init_from_env", "is_main",
           "local_device", "max_over_ranks", "on_main", "rank_and_world", "rank_file", "sum_over_ranks"]
