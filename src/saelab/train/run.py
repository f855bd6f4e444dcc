"""The `train` stage: token windows → activations → dictionaries in `workspace/dictionaries/`.

A run's checkpoint and JSONL log live in `workspace/train/RUN/`; each dictionary is saved
in saelab's native format with a cfg.json that records how it was trained.

A rerun resumes from the checkpoint when it was written by the same run (same config, model
and token windows); a checkpoint of another run, or dictionaries with no checkpoint to tell,
are never trained over unless asked (`resume=False`, the CLI's `--overwrite`). The run and
its dictionaries are locked while they are written: one writer each.

Under torchrun (a process group of 2+ ranks, on a filesystem every rank sees) a run is data parallel
(`parallel="data"`): each rank reads its share of every step's windows through the model, and the ranks'
losses, selections, dead-latent counts and gradients are the whole batch's, so the dictionaries are the
one-process ones up to rounding; rank 0 takes the locks, decides whether to resume, and writes the
checkpoint, log and dictionaries. `parallel="dictionaries"` (`--distribute-dictionaries`) spreads the run's
dictionaries over the ranks instead: each reads every window and trains its share, with its own checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging
import math
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import torch

from ..activations.buffer import ActivationBuffer, buffer_name, write_buffer
from ..data.tokens import TokenWindows
from ..distributed import (
    LOCAL,
    Local,
    all_gather_objects,
    barrier,
    on_main,
    rank_and_world,
    rank_file,
)
from ..errors import ArtifactError, ConfigError
from ..models.hookpoints import resolve_hookpoint
from ..models.load import LoadedModel
from ..workspace import Workspace
from .checkpoint import (
    CHECKPOINT_NAME,
    RunState,
    check_world_size,
    config_fingerprint,
    fingerprint_difference,
    load_checkpoint,
    read_checkpoint,
)
from .config import TrainConfig
from .loop import LOG_NAME, fit
from .parallel import Parallel, batch_ranks, rank_dictionaries, run_files, written_by_rank0
from .source import BufferSource, ChunkedSource, ReadWindows, model_reader
from .trainer import DictionaryTrainer, coder_config

log = logging.getLogger(__name__)


def window_range(config: TrainConfig, windows: TokenWindows) -> tuple[int, int]:
    """Windows [first, stop) that cover `config.n_tokens` tokens from `config.first_window`."""
    stop = config.first_window + math.ceil(config.n_tokens / windows.ctx_len)
    if stop > windows.n_windows:
        have = (windows.n_windows - config.first_window) * windows.ctx_len
        raise ConfigError(
            f"n_tokens: got {config.n_tokens:,}, but the workspace's windows hold {max(have, 0):,} tokens from window "
            f"{config.first_window}; lower n_tokens, or rebuild the windows with a larger budget "
            "(`saelab tokens --n-tokens N --overwrite`, or a new --workspace)."
        )
    return config.first_window, stop


def build_trainers(config: TrainConfig, widths: dict[str, int], canonical: dict[str, str], model: str,
                   total_steps: int, device: torch.device | str = "cpu", names: set[str] | None = None,
                   ranks: Local = LOCAL) -> dict[str, DictionaryTrainer]:
    """One DictionaryTrainer per DictionarySpec (those in `names`, if given); widths maps canonical hookpoints to
    d. A dictionary's seed is the run's seed plus its place in the config, whichever rank trains it."""
    trainers = {}
    for i, spec in enumerate(config.dictionaries):
        if names is not None and spec.name not in names:
            continue
        hp, out_hp = canonical[spec.hookpoint], canonical.get(spec.out_hookpoint or spec.hookpoint)
        cfg = coder_config(spec, widths[hp], widths[out_hp], hp, out_hp if spec.is_transcoder else None, model)
        trainers[spec.name] = DictionaryTrainer(spec, cfg, config, total_steps, device=device, seed=config.seed + i,
                                                ranks=ranks)
    return trainers


def train(config: TrainConfig, read: ReadWindows, canonical: dict[str, str], widths: dict[str, int],
          windows_range: tuple[int, int], run_dir: Path, *, ctx_len: int, fingerprint_extra: dict[str, Any],
          model: str = "", resume: bool = False, progress: bool = True, until_step: int | None = None,
          device: torch.device | str = "cpu", heldout_range: tuple[int, int] | None = None,
          buffer_dir: Path | None = None, source: Any = None, heldout: dict[str, torch.Tensor] | None = None,
          parallel: Parallel = "data") -> tuple[dict[str, DictionaryTrainer], RunState]:
    """Train the run's dictionaries (this rank's, see `parallel`) from any window reader (the model, or tensors in
    tests).

    heldout_range: windows [lo, hi) read once for the held-out FVU in the log. buffer_dir: where a
    multi-pass run keeps its activation buffer (default `run_dir/buffer`). source / heldout: batches and
    held-out activations from elsewhere (synthetic runs: `train.synthetic`, its `ranks` as `batch_ranks`
    says), instead of `read`. parallel: how the ranks of a process group share the run (module docstring)."""
    rank, world = rank_and_world()
    mine = {s.name for s in rank_dictionaries(config, parallel, rank, world)}
    if source is None:
        source = training_source(config, read, windows_range, ctx_len, buffer_dir or run_dir / "buffer",
                                 fingerprint_extra, progress and rank == 0, batch_ranks(parallel))
    trainers = build_trainers(config, widths, canonical, model, source.total_steps, device, mine, source.ranks)
    fingerprint = config_fingerprint({"config": asdict(config), **fingerprint_extra})
    files = run_files(run_dir, parallel)
    state = _resume(run_dir, trainers, fingerprint, parallel) if resume else RunState()
    if resume:
        log.info("resuming %s at step %d of %d", run_dir, state.step, source.total_steps)
    io = {s.name: (canonical[s.hookpoint], canonical[s.out_hookpoint or s.hookpoint]) for s in config.dictionaries
          if s.name in mine}
    if heldout is None and heldout_range is not None and heldout_range[1] > heldout_range[0]:
        acts, mask = read(*heldout_range)
        heldout = {hp: a[mask.to(a.device)].to(torch.float32) for hp, a in acts.items()}
    eval_every = config.eval_every or max(1, source.total_steps // 20)
    try:
        state = fit(trainers, io, source, state, files, checkpoint_every=config.checkpoint_every,
                    log_every=config.log_every, fingerprint=fingerprint, progress=progress and rank == 0,
                    until_step=until_step, heldout=heldout, eval_every=eval_every)
    except KeyboardInterrupt:
        _say_kept(run_dir, fingerprint, source.total_steps, config.checkpoint_every)
        raise
    return trainers, state


def _resume(run_dir: Path, trainers: dict[str, DictionaryTrainer], fingerprint: str, parallel: Parallel) -> RunState:
    """The state this rank resumes: the run's checkpoint (every data-parallel rank reads rank 0's), or with the
    dictionaries spread over ranks its own, where it wrote one (else its dictionaries start over)."""
    rank, world = rank_and_world()
    path = run_dir / (rank_file(CHECKPOINT_NAME, rank) if parallel == "dictionaries" else CHECKPOINT_NAME)
    if rank > 0 and parallel == "dictionaries" and not path.exists():
        log.warning("rank %d: no checkpoint of its own at %s; its dictionaries start over", rank, path)
        return RunState()
    return load_checkpoint(path, trainers, fingerprint, world, parallel)


def training_source(config: TrainConfig, read: ReadWindows, windows_range: tuple[int, int], ctx_len: int,
                    buffer_dir: Path, identity: dict[str, Any], progress: bool,
                    ranks: Local = LOCAL) -> ChunkedSource | BufferSource:
    """One pass: a `ChunkedSource` over the model's stream. More (`epochs` ≠ 1 or `steps`): the windows'
    activations go into an activation buffer at `buffer_dir` once (resumed, or reused when finished), and
    a `BufferSource` reads it epoch after epoch. ranks: how each step is split (`batch_ranks`); under a process
    group rank 0 writes the buffer while the others wait."""
    first, stop = windows_range
    if not config.buffered:
        return ChunkedSource(read, first, stop, config.batch_size, config.shuffle_windows, config.seed, ctx_len,
                             ranks)

    def write(read: ReadWindows) -> ActivationBuffer:
        return write_buffer(buffer_dir, read, first, stop, buffer_identity(config, identity, windows_range),
                            ctx_len=ctx_len, chunk_windows=config.shuffle_windows, progress=progress)

    buffer = write(read) if rank_and_world()[1] == 1 else written_by_rank0(write, read, buffer_dir)
    return BufferSource(buffer, config.batch_size * ctx_len, config.seed, (stop - first) * ctx_len, config.epochs,
                        config.steps, ranks)


def buffer_identity(config: TrainConfig, identity: dict[str, Any], windows_range: tuple[int, int]) -> dict[str, Any]:
    """What a run's activation buffer holds (its cfg.json `identity`; its directory name is a hash of it)."""
    return {**identity, "windows": list(windows_range), "hookpoints": config.hookpoints}


def heldout_range(config: TrainConfig, windows: TokenWindows, first: int, stop: int) -> tuple[tuple[int, int],
                                                                                             tuple[int, int]]:
    """((first, stop) to train on, (lo, hi) held out): the `heldout_windows` after the training windows where
    the workspace has them, else the last ones of the training range, which training then leaves out."""
    h = config.heldout_windows
    if h == 0:
        return (first, stop), (stop, stop)
    if stop + h <= windows.n_windows:
        return (first, stop), (stop, stop + h)
    if stop - h <= first:
        raise ConfigError(f"heldout_windows: got {h}, but the run trains on only {stop - first} windows; "
                          "lower it (0 turns the held-out FVU off) or train on more tokens.")
    return (first, stop - h), (stop - h, stop)


def _say_kept(run_dir: Path, fingerprint: str, total_steps: int, checkpoint_every: int) -> None:
    """Log what an interrupted run keeps: its last checkpoint's step."""
    path = run_dir / CHECKPOINT_NAME
    try:
        payload = read_checkpoint(path, mmap=True) if path.exists() else None
    except ArtifactError:
        payload = None
    if payload is not None and payload["fingerprint"] == fingerprint:
        log.warning("interrupted: %s keeps its checkpoint at step %d of %d (one every %d steps); a rerun of the "
                    "same command resumes there", run_dir, payload["state"]["step"], total_steps, checkpoint_every)
    else:
        log.warning("interrupted before the first checkpoint of %s (one every %d steps): a rerun starts at step 0",
                    run_dir, checkpoint_every)


def save_dictionaries(trainers: dict[str, DictionaryTrainer], workspace: Workspace, config: TrainConfig,
                      state: RunState, provenance: dict[str, Any], run_dir: Path,
                      log_path: Path | None = None) -> list[Path]:
    """Save every dictionary of `trainers` with its training record in cfg.json (under `extra.training`) and its
    lines of the run's log (`log_path`, default `run_dir/log.jsonl`)."""
    paths = []
    log_path = log_path or run_dir / LOG_NAME
    run_log = [ln for ln in log_path.read_text().splitlines() if ln] if log_path.exists() else []
    for spec in (s for s in config.dictionaries if s.name in trainers):
        trainer = trainers[spec.name]
        record = {"train_config": asdict(config), "dictionary": asdict(spec), "lr": trainer.base_lr,
                  "lr_warmup_steps": trainer.warmup, "tokens_seen": state.window_tokens,
                  "text_tokens_seen": state.text_tokens, "steps": state.step, "run_dir": str(run_dir),
                  "final": trainer.summary(), **provenance}
        coder = trainer.coder
        coder.cfg = dataclasses.replace(coder.cfg, extra={**coder.cfg.extra, "training": record})
        mine = [ln for ln in run_log if json.loads(ln)["dictionary"] == spec.name]

        def write(tmp: Path, coder: Any = coder, mine: list[str] = mine) -> None:
            coder.save(tmp)
            (tmp / "train_log.jsonl").write_text("".join(ln + "\n" for ln in mine))

        path = replace_directory(workspace.dictionary(spec.name), write)
        paths.append(path)
        log.info("saved %s (%s)", path, trainer.summary())
    return paths


def replace_directory(final: Path, write: Any) -> Path:
    """`write(tmp)` fills a fresh directory beside `final`, which then takes its place: a reader sees the
    old directory or the new one (or, for an instant, none), never the old config with the new weights."""
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    for left in final.parent.glob(f".{glob.escape(final.name)}.*-*"):  # a killed writer's (the caller holds the lock)
        shutil.rmtree(left, ignore_errors=True)
    write(tmp)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def run_directory(workspace: Workspace, config: TrainConfig, run_name: str | None = None) -> Path:
    """`workspace/train/RUN`: the run's checkpoint and log (RUN: `run_name`, else the first dictionary's name)."""
    return workspace.train(run_name or config.dictionaries[0].name)


def run_fingerprint(config: TrainConfig, windows: TokenWindows, lm: LoadedModel) -> str:
    """What a checkpoint must have been written by to be resumed: the config, token windows and model."""
    return config_fingerprint({"config": asdict(config), "tokens_hash": windows.tokens_hash, "model": lm.spec})


def resumable(run_dir: Path, fingerprint: str, dictionaries: list[Path], world: int = 1,
              parallel: Parallel = "data") -> bool:
    """Whether a rerun resumes `run_dir`: True when its checkpoint was written by this same run (on `world` ranks
    sharing it as `parallel` says), False when there is nothing to resume or write over; an ArtifactError, naming
    how to keep or replace them, when the checkpoint is another run's or finished dictionaries have no checkpoint
    to tell."""
    checkpoint = run_dir / CHECKPOINT_NAME
    if checkpoint.exists():
        payload = read_checkpoint(checkpoint, mmap=True)
        stored = payload["fingerprint"]
        if stored != fingerprint:
            raise ArtifactError(f"train: {checkpoint} was written by a run with other options, model or token "
                                f"windows ({fingerprint_difference(stored, fingerprint)}); rerun with those to resume "
                                "it, --overwrite to train this run over it, or --name for a new run.")
        check_world_size(payload, checkpoint, world, parallel=parallel)
        return True
    existing = [str(d) for d in dictionaries if (d / "cfg.json").exists()]
    if existing:
        raise ArtifactError(f"train: {run_dir} has no checkpoint to resume, and {', '.join(existing)} already "
                            "hold dictionaries; --overwrite to train over them, or --name for new ones.")
    return False


def run(config: TrainConfig, workspace: Workspace, lm: LoadedModel, windows: TokenWindows, *,
        run_name: str | None = None, resume: bool | None = None, progress: bool = True,
        until_step: int | None = None, parallel: Parallel = "data") -> list[Path]:
    """Train the dictionaries of `config` from one activation stream; return their directories (every rank's,
    on every rank, under torchrun).

    Args:
        run_name: the run's directory under `workspace/train/` (default: the first dictionary's name).
        resume: None (default): resume the run's checkpoint when this same run wrote it, start when there
            is nothing, refuse (ArtifactError) another run's checkpoint or finished dictionaries; True:
            resume, an error without a checkpoint; False: start over, writing over the run and its
            dictionaries (the CLI's --overwrite).
        until_step: stop after this step, with the checkpoint written, and return [] (resume later).
        parallel: under torchrun, `data` (each rank its rows of every step; the result does not depend on the
            number of ranks beyond rounding) or `dictionaries` (each rank its share of the dictionaries, every
            window; `--distribute-dictionaries`). A checkpoint resumes on as many ranks, shared the same way.

    Every dictionary directory and the run directory are locked while the run writes them (by rank 0).

    Example:
        >>> spec = DictionarySpec("sae-4k", "resid_post.6", d_sae=4096, k=32)
        >>> run(TrainConfig((spec,), n_tokens=200_000), Workspace.at("ws"), lm, windows)
        [PosixPath('ws/dictionaries/sae-4k')]
    """
    canonical = {hp: resolve_hookpoint(lm.model, hp).name for hp in config.hookpoints}
    hookpoints = list(dict.fromkeys(canonical.values()))
    read = model_reader(lm, windows, hookpoints, config.batch_size)
    (first, stop), held = heldout_range(config, windows, *window_range(config, windows))
    probe, _ = read(first, first + 1)  # one window, to learn every hookpoint's width
    widths = {hp: int(a.shape[-1]) for hp, a in probe.items()}
    run_dir = run_directory(workspace, config, run_name)
    rank_dictionaries(config, parallel, *rank_and_world())  # more ranks than dictionaries: refused before any lock
    with locked_run(workspace, config, run_dir, run_fingerprint(config, windows, lm), resume, parallel) as resume:
        return _run_locked(config, workspace, lm, windows, read, canonical, widths, (first, stop), held, run_dir,
                           resume, progress, until_step, parallel)


@contextlib.contextmanager
def locked_run(workspace: Workspace, config: TrainConfig, run_dir: Path, fingerprint: str,
               resume: bool | None, parallel: Parallel = "data") -> Iterator[bool]:
    """Hold the locks of the run directory and of every dictionary it writes; yield whether to resume (`resume`
    None: decided by `resumable`, which refuses another run's checkpoint). A run started over loses the old
    checkpoints first, so they cannot outlive the run that replaces them.

    Under a process group rank 0 takes the locks and decides; every rank gets its decision, or its error, and
    rank 0 keeps the locks until every rank has finished the block."""
    world = rank_and_world()[1]
    with contextlib.ExitStack() as locks:
        decided = on_main(lambda: _lock_and_decide(locks, workspace, config, run_dir, fingerprint, resume, world,
                                                   parallel))
        yield decided
        if world > 1:
            barrier()


def _lock_and_decide(locks: contextlib.ExitStack, workspace: Workspace, config: TrainConfig, run_dir: Path,
                     fingerprint: str, resume: bool | None, world: int, parallel: Parallel) -> bool:
    for kind, name in [("train", run_dir.name)] + [("dictionaries", s.name) for s in config.dictionaries]:
        locks.enter_context(workspace.lock(kind, name))
    if resume is None:
        resume = resumable(run_dir, fingerprint, [workspace.dictionary(s.name) for s in config.dictionaries],
                           world, parallel)
    if not resume:
        for old in run_dir.glob("checkpoint*.pt"):  # rank 0's, and other ranks' of --distribute-dictionaries
            old.unlink()
    return resume


def _run_locked(config: TrainConfig, workspace: Workspace, lm: LoadedModel, windows: TokenWindows,
                read: ReadWindows, canonical: dict[str, str], widths: dict[str, int], windows_range: tuple[int, int],
                held: tuple[int, int], run_dir: Path, resume: bool, progress: bool,
                until_step: int | None, parallel: Parallel) -> list[Path]:
    first, stop = windows_range
    provenance = {"model": lm.describe(), "tokens_hash": windows.tokens_hash, "windows": [first, stop],
                  "heldout_windows": list(held),
                  "ctx_len": windows.ctx_len, "excluded_positions": list(windows.config.exclude),
                  "excluded_positions_note": "sink = position 0 of every window; special = special-token ids"}
    identity = {"tokens_hash": windows.tokens_hash, "model": lm.spec}
    buffer_dir = None
    if config.buffered:  # one buffer per (model, windows, hookpoints): later runs with other settings reuse it
        name = buffer_name({**buffer_identity(config, identity, (first, stop)), "dtype": str(lm.dtype)})
        buffer_dir = workspace.root / "buffers" / name
        provenance["buffer"] = str(buffer_dir)
    rank = rank_and_world()[0]
    with workspace.lock("buffers", buffer_dir.name) if buffer_dir is not None and rank == 0 \
            else contextlib.nullcontext():
        trainers, state = train(config, read, canonical, widths, (first, stop), run_dir, ctx_len=windows.ctx_len,
                                fingerprint_extra=identity, model=lm.spec, resume=resume, progress=progress,
                                until_step=until_step, device=lm.device, heldout_range=held, buffer_dir=buffer_dir,
                                parallel=parallel)
    if state.step < next(iter(trainers.values())).total_steps:
        return []  # stopped on purpose (until_step); a rerun resumes
    return save_run_dictionaries(trainers, workspace, config, state, provenance, run_dir, parallel)


def save_run_dictionaries(trainers: dict[str, DictionaryTrainer], workspace: Workspace, config: TrainConfig,
                          state: RunState, provenance: dict[str, Any], run_dir: Path,
                          parallel: Parallel = "data") -> list[Path]:
    """`save_dictionaries` by the ranks that write them (rank 0 under data parallel, each rank its own with the
    dictionaries spread); every rank gets every directory, in the config's order."""
    files = run_files(run_dir, parallel)
    mine = save_dictionaries(trainers, workspace, config, state, provenance, run_dir, files.log) \
        if files is not None else []
    if rank_and_world()[1] == 1:
        return mine
    saved = {Path(p).name: Path(p) for part in all_gather_objects([str(p) for p in mine]) for p in part}
    return [saved[s.name] for s in config.dictionaries if s.name in saved]


__all__ = [
    "buffer_identity",
    "build_trainers",
    "heldout_range",
    "locked_run",
    "replace_directory",
    "resumable",
    "run",
    "run_directory",
    "run_fingerprint",
    "save_dictionaries",
    "save_run_dictionaries",
    "train",
    "training_source",
    "window_range",
]
