"""The `latents` stage: one model pass encodes with one or several dictionaries and
streams their sparse latent activations to disk, shard by shard, resumably.

Shard i covers windows [i·shard_windows, (i+1)·shard_windows). Under torchrun each rank
takes a contiguous block of shards, so the shards (and the merged manifest) are the same
whatever the number of processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import torch

from ..activations.buffer import ActivationBuffer, buffer_stream
from ..activations.fits import check_dictionaries_fit
from ..activations.stream import ActivationBatch, StreamConfig, stream_activations
from ..data.tokens import TokenWindows
from ..distributed import barrier, block, rank_and_world
from ..errors import ArtifactError, ConfigError
from ..models.hookpoints import resolve_hookpoint
from ..models.load import LoadedModel
from ..progress import token_progress
from ..workspace import Workspace
from .config import CacheConfig, Encoder
from .manifest import dictionary_hash, finalize_store, finished_shards, manifest_path, prepare_store, write_manifest
from .shard import ShardBuilder, ShardRecord

log = logging.getLogger(__name__)


class _Target:
    """One dictionary being cached: its coder, store directory and finished shards."""

    def __init__(self, name: str, coder: Encoder, store: Path, identity: dict[str, Any]) -> None:
        self.name, self.coder, self.store, self.identity = name, coder, store, identity
        self.hookpoint: str = identity["hookpoint"]
        self.done: dict[int, ShardRecord] = {}
        self.param_dtype = next(iter(coder.state_dict().values())).dtype


def _identity(name: str, coder: Encoder, hookpoint: str, lm: LoadedModel, windows: TokenWindows,
              config: CacheConfig, n_windows: int) -> dict[str, Any]:
    ident = {
        "artifact": "latents", "dictionary": name, "dictionary_hash": dictionary_hash(coder),
        "dictionary_class": type(coder).__name__, "hookpoint": hookpoint,
        "d_in": int(coder.cfg.d_in), "d_sae": int(coder.cfg.d_sae),
        "model": {"path": lm.path, "dtype": str(lm.dtype).removeprefix("torch.")},
        "tokens_hash": windows.tokens_hash, "n_windows": n_windows, "ctx_len": windows.ctx_len,
        "value_dtype": config.value_dtype, "shard_windows": config.shard_windows, "batch_size": config.batch_size,
        "excluded": list(windows.config.exclude),
        "dictionary_source": getattr(coder, "source", None),  # spec, Hub repo and commit: not part of the identity
        "excluded_note": "positions excluded by the token windows' `exclude` (sink = position 0, special tokens) "
                         "are not stored: they never count as firing, and n_text_tokens counts only the others",
    }
    return json.loads(json.dumps(ident))  # as it reads back from cfg.json (tuples → lists)


def _targets(workspace: Workspace, lm: LoadedModel, windows: TokenWindows, config: CacheConfig,
             dictionaries: Mapping[str, Encoder], n_windows: int) -> list[_Target]:
    if not dictionaries:
        raise ConfigError("dictionaries: got none; give at least one dictionary to encode with.")
    targets = []
    for name, coder in dictionaries.items():
        if getattr(coder.cfg, "n_sources", 1) != 1:
            raise ConfigError(f"dictionaries[{name!r}]: a crosscoder reads {coder.cfg.n_sources} sources; the latent "
                              "cache encodes one hookpoint per dictionary.")
        hp = resolve_hookpoint(lm.model, coder.cfg.hookpoint).name
        ident = _identity(name, coder, hp, lm, windows, config, n_windows)
        targets.append(_Target(name, coder, workspace.latents(name), ident))
    check_dictionaries_fit(dictionaries, lm)  # before any forward: a wrong width fails now, not in shard 0
    return targets


def _encode_batch(batch: ActivationBatch, targets: list[_Target], builders: dict[str, ShardBuilder]) -> None:
    coords = batch.mask.nonzero()  # [n_text, 2] (row in batch, position)
    coords[:, 0] += int(batch.windows[0])  # → (window, position)
    for t in targets:
        if t.name not in builders:
            continue
        acts = batch.acts[t.hookpoint]  # [B, ctx, d_in]
        if acts.shape[-1] != t.identity["d_in"]:
            raise ConfigError(f"dictionaries[{t.name!r}]: d_in is {t.identity['d_in']}, but {t.hookpoint} "
                              f"gives activations of width {acts.shape[-1]}: is it the dictionary of another model?")
        x = acts[batch.mask.to(acts.device)].to(t.param_dtype)  # [n_text, d_in]
        with torch.inference_mode():
            builders[t.name].add(t.coder.encode(x), coords.to(x.device))


def _cache_shards(lm: LoadedModel, windows: TokenWindows, config: CacheConfig, targets: list[_Target],
                  todo: list[int], n_windows: int, rank: int, world: int, progress: bool,
                  buffer: ActivationBuffer | None = None) -> None:
    S, n_shards = config.shard_windows, -(-n_windows // config.shard_windows)
    hookpoints = sorted({t.hookpoint for t in targets})

    def positions(i: int) -> int:  # window positions of shard i
        return (min((i + 1) * S, n_windows) - i * S) * windows.ctx_len

    mine = _block(n_shards, rank, world)
    resumed = sum(positions(i) for i in mine if i not in todo)  # finished shards: done, not part of the rate
    with token_progress(sum(map(positions, mine)), "cache", enabled=progress, done=resumed) as advance:
        for lo, hi in _contiguous(todo):
            stream = StreamConfig(batch_size=config.batch_size, start=lo * S, stop=min(hi * S, n_windows))
            builders: dict[str, ShardBuilder] = {}
            batches = (buffer_stream(buffer, windows, stream.start, int(stream.stop), config.batch_size)
                       if buffer is not None else stream_activations(lm, windows, hookpoints, stream, progress=False))
            for batch in batches:
                index = int(batch.windows[0]) // S
                advance(batch.tokens.numel(), f"shard {index + 1}/{n_shards}")
                if not builders:
                    w0, w1 = index * S, min((index + 1) * S, n_windows)
                    builders = {t.name: ShardBuilder(index, w0, w1, t.identity["d_sae"], windows.ctx_len,
                                                     config.torch_value_dtype)
                                for t in targets if index not in t.done}
                _encode_batch(batch, targets, builders)
                if int(batch.windows[-1]) + 1 == min((index + 1) * S, n_windows):  # the shard is full
                    _write_shard(index, targets, builders, rank, world, n_shards)
                    builders = {}


def _write_shard(index: int, targets: list[_Target], builders: dict[str, ShardBuilder], rank: int, world: int,
                 n_shards: int) -> None:
    """Write shard `index` of each target that built it, and list it in the target's manifest."""
    for t in targets:
        if t.name in builders:
            t.done[index] = builders[t.name].write(t.store)
            write_manifest(manifest_path(t.store, rank, world), _own(t.done, rank, world, n_shards), n_shards)
            log.info("%s: shard %d written", t.name, index)


def _contiguous(indices: list[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for i in indices:
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return [(lo, hi) for lo, hi in out]


def _own(done: dict[int, ShardRecord], rank: int, world: int, n_shards: int) -> dict[int, ShardRecord]:
    """The records a rank lists: all of them alone, else those of its block."""
    if world == 1:
        return done
    mine = set(_block(n_shards, rank, world))
    return {i: r for i, r in done.items() if i in mine}


def _block(n_shards: int, rank: int, world: int) -> range:
    """The contiguous block of shard indices of one rank."""
    return range(*block(n_shards, rank, world))


def run(config: CacheConfig, workspace: Workspace, lm: LoadedModel, windows: TokenWindows,
        dictionaries: Mapping[str, Encoder], overwrite: bool = False, progress: bool = True,
        buffer: ActivationBuffer | None = None) -> dict[str, Path]:
    """Cache the latent activations of `dictionaries` over the workspace's token windows.

    One forward pass per batch serves every dictionary (and every hookpoint they read),
    stopping after the deepest hookpoint. Finished shards are kept: a run that was killed
    resumes where it stopped. Under torchrun (a process group already initialised) each
    rank caches its own block of shards. Each store is locked while it is written (rank 0
    holds the locks): a second writer of the same store stops with an ArtifactError.

    Args:
        dictionaries: store name → dictionary; the store goes to `workspace/latents/NAME/`.
        overwrite: rebuild stores that exist (else an existing store made differently is refused).
        buffer: an activation buffer of these windows, model and hookpoints (a training run's): read instead
            of running the model (the demo caches the windows its SAEs trained on).

    Returns: store name → store directory (read it with `LatentStore`).

    Example:
        >>> paths = run(CacheConfig(batch_size=8), Workspace.at("ws"), lm, windows, {"sae6": coder})
        >>> LatentStore(paths["sae6"]).top_k(latent=12, k=10)
    """
    rank, world = rank_and_world()
    n_windows = windows.n_windows if config.n_windows is None else min(config.n_windows, windows.n_windows)
    targets = _targets(workspace, lm, windows, config, dictionaries, n_windows)
    with contextlib.ExitStack() as locks:
        if rank == 0:
            for t in targets:
                locks.enter_context(workspace.lock("latents", t.name))
        if buffer is not None:
            _check_buffer(buffer, lm, windows, targets, n_windows)
        _run_locked(config, lm, windows, targets, n_windows, overwrite, progress, rank, world, buffer)
    return {t.name: t.store for t in targets}


def _check_buffer(buffer: ActivationBuffer, lm: LoadedModel, windows: TokenWindows, targets: list[_Target],
                  n_windows: int) -> None:
    """The buffer must be of this model and these windows, and hold every hookpoint the stores read."""
    identity = buffer.cfg.get("identity", {})
    missing = sorted({t.hookpoint for t in targets} - set(buffer.hookpoints))
    lo, hi = buffer.cfg["windows"]
    if identity.get("model") != lm.spec or identity.get("tokens_hash") != windows.tokens_hash or missing \
            or lo != 0 or hi < n_windows:
        raise ArtifactError(f"buffer: {buffer.path} holds {identity.get('model')!r} activations of windows "
                            f"[{lo}, {hi}) at {buffer.hookpoints} (tokens {identity.get('tokens_hash')}); this "
                            f"cache needs {lm.spec!r}, windows [0, {n_windows}) of tokens {windows.tokens_hash} at "
                            f"{sorted({t.hookpoint for t in targets})}. Cache without it.")


def _run_locked(config: CacheConfig, lm: LoadedModel, windows: TokenWindows, targets: list[_Target], n_windows: int,
                overwrite: bool, progress: bool, rank: int, world: int, buffer: ActivationBuffer | None = None) -> None:
    n_shards = -(-n_windows // config.shard_windows)
    if rank == 0:
        for t in targets:
            prepare_store(t.store, t.identity, overwrite)
    barrier()
    mine = _block(n_shards, rank, world)
    for t in targets:
        t.done = {i: r for i, r in finished_shards(t.store).items() if (t.store / r.file).exists()}
    todo = [i for i in mine if any(i not in t.done for t in targets)]
    log.info("rank %d/%d: %d of %d shards to cache", rank, world, len(todo), len(mine))
    try:
        _cache_shards(lm, windows, config, targets, todo, n_windows, rank, world, progress, buffer)
    except KeyboardInterrupt:
        for t in targets:
            log.warning("interrupted: %s keeps %d of %d shards (a rerun of the same command resumes there)",
                        t.store, len(t.done), n_shards)
        raise
    barrier()
    if rank == 0:
        for t in targets:
            totals = finalize_store(t.store, t.identity, n_shards)
            log.info("%s: %s", t.name, totals)
    barrier()
