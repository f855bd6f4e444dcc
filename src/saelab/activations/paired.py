"""Paired activations: two models over the same token windows, read at the same positions.

A crosscoder (model diffing) reads the base and the target model at the *same token*. The
artifact is written per layer and per shard of windows (`layer_06/shard_00000.safetensors`:
`base` and `target` [n, d] at the valid positions, with `window`, `pos`, `group` [n]),
atomically; a finished shard is not recomputed, `manifest.json` is written last. Its token
windows are stored beside it (`tokens/`), so examples can be shown without the models.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .._io import atomic_path, read_json, write_cfg, write_json
from ..data.tokens import TokenWindows, load_token_windows, save_token_windows, text_mask
from ..distributed import all_gather_objects, barrier, block, rank_and_world
from ..errors import ArtifactError, ConfigError
from ..models.hookpoints import resolve_hookpoint
from ..models.load import LoadedModel, parse_dtype
from ..progress import token_progress
from ..workspace import difference
from .capture import ActivationReader

log = logging.getLogger(__name__)


def valid_mask(windows: TokenWindows) -> torch.Tensor:
    """bool [n_windows, ctx_len]: text positions that are not padding (see TokenizeConfig.exclude)."""
    mask = text_mask(windows.tokens, windows.config.exclude, windows.special_ids, windows.bos_id)
    return mask & (windows.doc_index >= 0)


def write_paired_activations(
    base: LoadedModel, target: LoadedModel, windows: TokenWindows, layers: Sequence[int], out_dir: str | Path, *,
    groups: tuple[list[str], np.ndarray] | None = None, batch_size: int = 8, dtype: torch.dtype | str = torch.bfloat16,
    resume: bool = True, shard_windows: int = 64, progress: bool = True,
) -> "PairedActivations":
    """Run both models on the same windows; store residual-stream activations (after block L) per layer.

    Each forward stops after the deepest layer. Only valid positions are stored
    (`valid_mask`: sink/BOS/special tokens as the windows' config excludes them, and padding).
    Both models must read the same token ids (the caller checks their tokenizers agree).

    Args:
        layers: decoder-layer indices; the hookpoint is `resid_post.L`.
        out_dir: the artifact directory (`cfg.json`, `tokens/`, `layer_LL/shard_SSSSS.safetensors`,
            `manifest.json` written last).
        groups: (group names, int [n_windows] group id per window), stored per token; None: one group.
        dtype: stored dtype, `bfloat16` (half the disk of float32) | `float16` | `float32`; readers return float32.
        resume: keep finished shards of a run with the same inputs; False recomputes everything.
        shard_windows: windows per shard (the unit of resumption).

    Example:
        >>> acts = write_paired_activations(base, target, windows, [6], "diff/activations")
        >>> next(acts.batches(6, 4096)).shape       # [4096, 2, d]: [:, 0] base, [:, 1] target
    """
    layers = [int(layer) for layer in layers]
    dtype = parse_dtype(dtype)
    if batch_size <= 0 or shard_windows <= 0:
        raise ConfigError(f"batch_size / shard_windows: got {batch_size} / {shard_windows}; "
                          "expected positive integers.")
    out = Path(out_dir)
    names, group = groups if groups is not None else (["all"], np.zeros(windows.n_windows, dtype=np.int64))
    cfg = {"artifact": "paired_activations", "base": {**base.describe(), "weights": base.weights_hash},
           "target": {**target.describe(), "weights": target.weights_hash},
           "layers": layers, "hookpoints": [f"resid_post.{layer}" for layer in layers], "d_model": base.d_model,
           "tokens_hash": windows.tokens_hash, "n_windows": windows.n_windows, "ctx_len": windows.ctx_len,
           "shard_windows": shard_windows, "dtype": str(dtype).removeprefix("torch."), "groups": names,
           "excluded": [*windows.config.exclude, "pad"]}
    rank, world = rank_and_world()
    failure = None
    if rank == 0:
        try:
            _prepare(out, cfg, windows, resume)
        except Exception as e:  # the other ranks must hear of it, not wait at the next collective
            failure = e
    _agree(failure)
    mask = valid_mask(windows)
    n_shards = math.ceil(windows.n_windows / shard_windows)
    lo_shard, hi_shard = block(n_shards, rank, world)  # under torchrun each rank writes its block of shards
    mine = min(hi_shard * shard_windows, windows.n_windows) - min(lo_shard * shard_windows, windows.n_windows)
    with token_progress(2 * mine * windows.ctx_len, "paired activations", enabled=progress and rank == 0) as advance:
        try:
            _write_shards(base, target, windows, layers, out, mask, group, range(lo_shard, hi_shard), shard_windows,
                          batch_size, dtype, advance)
        except Exception as e:
            failure = e
    _agree(failure)
    counts = [int(mask[s * shard_windows : (s + 1) * shard_windows].sum()) for s in range(n_shards)]
    if rank == 0:
        write_json(out / "manifest.json", {"n_shards": n_shards, "shard_tokens": counts, "n_tokens": sum(counts)})
    barrier()
    return PairedActivations(out)


def _agree(failure: BaseException | None) -> None:
    """Every rank learns whether all got this far (a no-op without torchrun): a rank's own failure is re-raised,
    another rank's is named, so no rank waits forever at the next collective."""
    flags = all_gather_objects(None if failure is None else f"{type(failure).__name__}: {failure}")
    if failure is not None:
        raise failure
    bad = [(r, f) for r, f in enumerate(flags) if f is not None]
    if bad:
        raise ArtifactError(f"paired activations: rank {bad[0][0]} failed ({bad[0][1]}); nothing half-written is "
                            "read: run the same command again to resume.")


def _write_shards(base: LoadedModel, target: LoadedModel, windows: TokenWindows, layers: list[int], out: Path,
                  mask: torch.Tensor, group: np.ndarray, shards: range, shard_windows: int, batch_size: int,
                  dtype: torch.dtype, advance: Any) -> None:
    """Write the shards `shards` that are not on disk yet (each atomically, every layer)."""
    for s in shards:
        lo, hi = s * shard_windows, min((s + 1) * shard_windows, windows.n_windows)
        paths = [_shard_path(out, layer, s) for layer in layers]
        if all(p.exists() for p in paths):
            advance.skip(2 * (hi - lo) * windows.ctx_len)  # resumed: done, not part of the rate
            continue
        acts = {which: _read(lm, windows.tokens[lo:hi], mask[lo:hi], layers, batch_size, dtype, advance)
                for which, lm in (("base", base), ("target", target))}
        win, pos = torch.nonzero(mask[lo:hi], as_tuple=True)  # row-major, like boolean indexing
        meta = {"window": (win + lo).to(torch.int32), "pos": pos.to(torch.int32),
                "group": torch.from_numpy(group[(win + lo).numpy()]).to(torch.int16)}
        for layer, path in zip(layers, paths):
            with atomic_path(path) as tmp:
                save_file({"base": acts["base"][layer], "target": acts["target"][layer], **meta}, str(tmp))


def _same_model(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """The same weights (an artifact written before weights were recorded: the same path)."""
    return old["weights"] == new["weights"] if "weights" in old else old["path"] == new["path"]


def _what_differs(old: dict[str, Any], cfg: dict[str, Any]) -> str:
    """The settings in which the stored activations differ from these (`Workspace.difference`), models first."""
    models = [k for k in ("base", "target") if not _same_model(old[k], cfg[k])]
    rest = difference(old, {k: v for k, v in cfg.items() if k not in ("base", "target")})
    named = [f"{k} model: other weights" for k in models] + ([rest] if rest != "none found" else [])
    return "; ".join(named) or "none found"


def _prepare(out: Path, cfg: dict[str, Any], windows: TokenWindows, resume: bool) -> None:
    """Start, resume, or (resume=False) restart the artifact at `out`."""
    cfg_path = out / "cfg.json"
    if cfg_path.exists():
        old = read_json(cfg_path)
        same = all(old.get(k) == v for k, v in cfg.items() if k not in ("base", "target")) and \
            all(_same_model(old[k], cfg[k]) for k in ("base", "target"))
        if not resume or not same:
            if resume:
                raise ArtifactError(f"{out} holds paired activations made differently ({_what_differs(old, cfg)}); "
                                    "use another output directory, or resume=False to recompute.")
            for sub in [*out.glob("layer_*"), out / "tokens"]:
                shutil.rmtree(sub, ignore_errors=True)
            (out / "manifest.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "tokens" / "cfg.json").exists():
        save_token_windows(windows, out / "tokens")
    write_cfg(out, cfg)


def _shard_path(out: Path, layer: int, shard: int) -> Path:
    return out / f"layer_{layer:02d}" / f"shard_{shard:05d}.safetensors"


@torch.inference_mode()
def _read(lm: LoadedModel, tokens: torch.Tensor, mask: torch.Tensor, layers: list[int], batch_size: int,
          dtype: torch.dtype, advance) -> dict[int, torch.Tensor]:
    """{layer: [n_valid, d]} of one shard of windows, in `dtype` on the CPU."""
    hooks = {layer: resolve_hookpoint(lm.model, f"resid_post.{layer}") for layer in layers}
    reader = ActivationReader(lm.model, list(hooks.values()))
    parts: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for lo in range(0, tokens.shape[0], batch_size):
        acts = reader(tokens[lo : lo + batch_size].to(lm.device, torch.long))
        m = mask[lo : lo + batch_size].to(lm.device)
        for layer, hp in hooks.items():
            parts[layer].append(acts[hp.name][m].to("cpu", dtype))  # [n_valid, d]
        advance(tokens[lo : lo + batch_size].numel())
    return {layer: torch.cat(p) for layer, p in parts.items()}


class PairedBatch(NamedTuple):
    """A batch of paired activations with where each row comes from."""

    acts: torch.Tensor
    """float32 [n, 2, d]: [:, 0] the base model, [:, 1] the target model, at the same token"""
    window: np.ndarray
    """int64 [n]: window index in the artifact's `tokens/`"""
    pos: np.ndarray
    """int64 [n]: position in the window"""
    group: np.ndarray
    """int64 [n]: group id (index into `PairedActivations.groups`)"""


class PairedActivations:
    """Reader of an artifact written by `write_paired_activations`.

    Example:
        >>> acts = PairedActivations("diff/activations")
        >>> for x in acts.batches(6, 4096, shuffle_seed=0):   # [n, 2, d] float32
        ...     ...
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        if not (self.directory / "manifest.json").exists():
            raise ArtifactError(f"{self.directory} holds no finished paired activations (manifest.json missing): "
                                "run write_paired_activations (or `saelab diff`, which resumes) first.")
        self.cfg: dict[str, Any] = read_json(self.directory / "cfg.json")
        self.manifest: dict[str, Any] = read_json(self.directory / "manifest.json")
        self._windows: TokenWindows | None = None

    @property
    def layers(self) -> list[int]:
        return list(self.cfg["layers"])

    @property
    def n_tokens(self) -> int:
        return int(self.manifest["n_tokens"])

    @property
    def d_model(self) -> int:
        return int(self.cfg["d_model"])

    @property
    def groups(self) -> list[str]:
        return list(self.cfg["groups"])

    def windows(self) -> TokenWindows:
        """The token windows the activations were read on (for contexts of examples); read from disk once."""
        if self._windows is None:
            self._windows = load_token_windows(self.directory / "tokens")
        return self._windows

    def batches(self, layer: int, batch_size: int, shuffle_seed: int | None = None) -> Iterator[torch.Tensor]:
        """float32 [n, 2, d] batches at `layer` (the last one may be smaller)."""
        for batch in self.batches_with_meta(layer, batch_size, shuffle_seed):
            yield batch.acts

    def batches_with_meta(self, layer: int, batch_size: int, shuffle_seed: int | None = None,
                          buffer_shards: int = 8) -> Iterator[PairedBatch]:
        """`PairedBatch`es at `layer`. With a seed, shards come in random order and rows are
        shuffled within a buffer of `buffer_shards` shards (memory stays bounded)."""
        if layer not in self.layers:
            raise ConfigError(f"layer: got {layer}; these paired activations hold layers {self.layers}.")
        order = np.arange(self.manifest["n_shards"])
        rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
        if rng is not None:
            rng.shuffle(order)
        rest: list[dict[str, torch.Tensor]] = []
        step = buffer_shards if rng is not None else 1
        for lo in range(0, len(order), step):
            parts = rest + [self._load(layer, int(s)) for s in order[lo : lo + step]]
            data = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
            if rng is not None:
                perm = torch.from_numpy(rng.permutation(data["base"].shape[0]))
                data = {k: v[perm] for k, v in data.items()}
            n_full = data["base"].shape[0] // batch_size * batch_size
            for i in range(0, n_full, batch_size):
                yield _batch({k: v[i : i + batch_size] for k, v in data.items()})
            rest = [{k: v[n_full:] for k, v in data.items()}]
        if rest and rest[0]["base"].shape[0]:
            yield _batch(rest[0])

    def training_batches(self, layer: int, batch_size: int, seed: int,
                         heldout: tuple[int, int] = (0, 0)) -> Iterator[torch.Tensor]:
        """Shuffled [batch_size, 2, d] batches of the windows outside `heldout` = [lo, hi) (the last one
        may be smaller): the stream a crosscoder trains on."""
        lo, hi = heldout
        rest: list[torch.Tensor] = []
        n_rest = 0
        for b in self.batches_with_meta(layer, batch_size, shuffle_seed=seed):
            keep = torch.from_numpy((b.window < lo) | (b.window >= hi))
            rest.append(b.acts[keep])
            n_rest += int(keep.sum())
            if n_rest >= batch_size:
                x = torch.cat(rest)
                for i in range(0, x.shape[0] - batch_size + 1, batch_size):
                    yield x[i : i + batch_size]
                tail = x[x.shape[0] // batch_size * batch_size :]
                rest, n_rest = [tail], tail.shape[0]
        if n_rest:
            yield torch.cat(rest)

    def _load(self, layer: int, shard: int) -> dict[str, torch.Tensor]:
        with safe_open(str(_shard_path(self.directory, layer, shard)), "pt") as f:
            return {k: f.get_tensor(k) for k in ("base", "target", "window", "pos", "group")}


def _batch(data: dict[str, torch.Tensor]) -> PairedBatch:
    acts = torch.stack([data["base"], data["target"]], dim=1).float()  # [n, 2, d]
    return PairedBatch(acts, data["window"].long().numpy(), data["pos"].long().numpy(), data["group"].long().numpy())


__all__ = ["PairedActivations", "PairedBatch", "valid_mask", "write_paired_activations"]
