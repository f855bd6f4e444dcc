"""`LatentStore`: read a latent store without loading it whole.

Every answer reads only what it needs: one latent is one slice per shard
(`safe_open(...).get_slice`), one window is one shard; totals come from `stats.safetensors`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from safetensors import safe_open

from .._io import CFG_NAME, read_json_object
from ..errors import ArtifactError, ConfigError
from .manifest import MANIFEST, STATS, read_manifest
from .shard import ShardRecord, index_dtype


class WindowMaxima(NamedTuple):
    """Windows where a latent fires, with its maximum in each (one row per window)."""

    windows: np.ndarray
    """int64 [n]: window indices"""
    values: np.ndarray
    """float32 [n]: the latent's maximum activation in the window"""
    positions: np.ndarray
    """int64 [n]: the first position where that maximum is reached"""


class Entries(NamedTuple):
    """Sparse activations: one row per (window, position, latent) where a latent fires."""

    windows: np.ndarray
    """int64 [n]"""
    positions: np.ndarray
    """int64 [n]"""
    latents: np.ndarray
    """int64 [n]"""
    values: np.ndarray
    """float32 [n]"""


class Frequencies(NamedTuple):
    """How often each latent fires, over the stored text tokens and windows."""

    per_token: np.ndarray
    """float64 [d_sae]: fraction of the n_tokens text positions where the latent fires"""
    per_window: np.ndarray
    """float64 [d_sae]: fraction of the n_windows windows where it fires at least once"""
    n_tokens: int
    n_windows: int


class ShardMatrix(NamedTuple):
    """One shard as a sparse matrix over its positions."""

    window_start: int
    window_stop: int
    matrix: sp.csr_matrix
    """float32 [(window_stop − window_start)·ctx_len, d_sae]; row (w − window_start)·ctx_len + position.
    Excluded positions (see cfg.json `excluded`) are empty rows."""


def _np(t: torch.Tensor, dtype: Any) -> np.ndarray:
    return (t.float() if t.is_floating_point() else t).numpy().astype(dtype, copy=False)


class LatentStore:
    """A complete latent store (`workspace/latents/NAME/`), read lazily.

    Example:
        >>> store = LatentStore(workspace.latents("sae6"))
        >>> top = store.top_k(latent=12, k=10)           # windows, max values, positions
        >>> store.dense(latent=12, window=int(top.windows[0]))   # float32 [ctx_len]
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / CFG_NAME).exists():
            raise ArtifactError(f"no latent store at {self.path} (cfg.json missing): run `saelab cache` first.")
        self.cfg: dict[str, Any] = read_json_object(self.path / CFG_NAME, "a latent store's config")
        if not self.cfg.get("complete"):
            done = len(read_manifest(self.path / MANIFEST)) if (self.path / MANIFEST).exists() else 0
            raise ArtifactError(f"the latent store {self.path} is incomplete ({done} shards finished): "
                                "run the same `saelab cache` again to resume it.")
        self.shards = read_manifest(self.path / MANIFEST)
        self.d_sae: int = self.cfg["d_sae"]
        self.ctx_len: int = self.cfg["ctx_len"]
        self.n_windows: int = self.cfg["n_windows"]
        self.n_tokens: int = self.cfg["n_text_tokens"]
        self.shard_windows: int = self.cfg["shard_windows"]
        self._stats: dict[str, np.ndarray] | None = None

    @property
    def tokens_hash(self) -> str:
        return self.cfg["tokens_hash"]

    def _open(self, shard: ShardRecord) -> Any:
        path = self.path / shard.file
        if not path.exists() or path.stat().st_size != shard.bytes:
            raise ArtifactError(f"shard {path} is missing or not the size the manifest lists ({shard.bytes} bytes): "
                                "the store is damaged; rebuild it with `saelab cache --overwrite`.")
        return safe_open(str(path), "pt")

    def _check_latent(self, latent: int) -> None:
        if not 0 <= latent < self.d_sae:
            raise ConfigError(f"latent: got {latent}; expected 0 ≤ latent < d_sae ({self.d_sae}).")

    def _slice(self, f: Any, ptr_name: str, names: tuple[str, ...], latent: int) -> list[torch.Tensor]:
        lo, hi = f.get_slice(ptr_name)[latent : latent + 2].tolist()
        return [f.get_slice(n)[lo:hi] for n in names]

    def stats(self) -> dict[str, np.ndarray]:
        """Per-latent totals: `counts` (text tokens where it fires), `window_counts`, `latent_max`."""
        if self._stats is None:
            with safe_open(str(self.path / STATS), "pt") as f:
                self._stats = {k: f.get_tensor(k).numpy() for k in f.keys()}
        return self._stats

    def frequencies(self) -> Frequencies:
        s = self.stats()
        return Frequencies(s["counts"] / max(self.n_tokens, 1), s["window_counts"] / max(self.n_windows, 1),
                           self.n_tokens, self.n_windows)

    def max_activations(self) -> np.ndarray:
        """float32 [d_sae]: each latent's maximum over the store (0 for dead latents)."""
        return self.stats()["latent_max"]

    def activations(self, latent: int) -> Entries:
        """Every stored activation of one latent, ordered by (window, position)."""
        self._check_latent(latent)
        parts = []
        for shard in self.shards:
            with self._open(shard) as f:
                parts.append(self._slice(f, "latent_ptr", ("window", "position", "value"), latent))
        w, p, v = (np.concatenate([_np(part[i], dt) for part in parts]) if parts else np.zeros(0, dt)
                   for i, dt in enumerate((np.int64, np.int64, np.float32)))
        return Entries(w, p, np.full(w.shape, latent, np.int64), v)

    def window_maxima(self, latent: int) -> WindowMaxima:
        """Every window where `latent` fires, ordered by window, with its maximum there."""
        self._check_latent(latent)
        names = ("window_max_window", "window_max_value", "window_max_position")
        parts = []
        for shard in self.shards:
            with self._open(shard) as f:
                parts.append(self._slice(f, "window_ptr", names, latent))
        cols = [np.concatenate([_np(part[i], dt) for part in parts]) if parts else np.zeros(0, dt)
                for i, dt in enumerate((np.int64, np.float32, np.int64))]
        return WindowMaxima(*cols)

    def top_k(self, latent: int, k: int) -> WindowMaxima:
        """The k windows with the largest maximum of `latent`, largest first (ties: lower window first)."""
        m = self.window_maxima(latent)
        order = np.lexsort((m.windows, -m.values))[:k]
        return WindowMaxima(m.windows[order], m.values[order], m.positions[order])

    def quantile_sample(self, latent: int, n_quantiles: int = 10, per_quantile: int = 5,
                        seed: int = 0) -> list[WindowMaxima]:
        """Activating windows stratified by their maximum: the windows sorted by maximum are cut into
        `n_quantiles` groups of (nearly) equal size, lowest first; `per_quantile` drawn from each."""
        if n_quantiles <= 0 or per_quantile <= 0:
            raise ConfigError(f"n_quantiles, per_quantile: got {n_quantiles}, {per_quantile}; "
                              "expected positive integers.")
        m = self.window_maxima(latent)
        order = np.lexsort((m.windows, m.values))  # ascending by maximum
        rng = np.random.default_rng(seed)
        out = []
        for group in np.array_split(order, n_quantiles):
            pick = np.sort(rng.choice(group, size=min(per_quantile, group.size), replace=False))
            out.append(WindowMaxima(m.windows[pick], m.values[pick], m.positions[pick]))
        return out

    def non_activating(self, latent: int, n: int, seed: int = 0) -> np.ndarray:
        """int64 [≤ n]: windows (drawn at random, sorted) where `latent` never fires."""
        silent = np.setdiff1d(np.arange(self.n_windows), self.window_maxima(latent).windows)
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(silent, size=min(n, silent.size), replace=False))

    def _shard_of(self, window: int) -> ShardRecord:
        if not 0 <= window < self.n_windows:
            raise ConfigError(f"window: got {window}; expected 0 ≤ window < n_windows ({self.n_windows}).")
        shard = self.shards[window // self.shard_windows]
        assert shard.window_start <= window < shard.window_stop
        return shard

    def window_latents(self, window: int) -> Entries:
        """Every latent active in one window, ordered by (position, latent)."""
        with self._open(self._shard_of(window)) as f:
            windows = f.get_tensor("window").numpy()
            idx = np.flatnonzero(windows == window)
            ptr = f.get_tensor("latent_ptr").numpy()
            pos = _np(f.get_tensor("position")[idx], np.int64)
            val = _np(f.get_tensor("value")[idx], np.float32)
        lat = np.searchsorted(ptr, idx, side="right") - 1
        order = np.lexsort((lat, pos))
        return Entries(np.full(idx.shape, window, np.int64), pos[order], lat[order], val[order])

    def dense(self, latent: int, window: int) -> np.ndarray:
        """float32 [ctx_len]: the activation of `latent` at every position of `window` (0 where silent)."""
        self._check_latent(latent)
        with self._open(self._shard_of(window)) as f:
            w, p, v = self._slice(f, "latent_ptr", ("window", "position", "value"), latent)
        w = w.numpy()
        lo, hi = np.searchsorted(w, window, side="left"), np.searchsorted(w, window, side="right")
        out = np.zeros(self.ctx_len, np.float32)
        out[_np(p[lo:hi], np.int64)] = _np(v[lo:hi], np.float32)
        return out

    def iter_csr(self) -> Iterator[ShardMatrix]:
        """Each shard as a scipy CSR matrix [positions, d_sae] (one shard in memory at a time)."""
        for shard in self.shards:
            with self._open(shard) as f:
                ptr = f.get_tensor("latent_ptr").numpy()
                rows = (_np(f.get_tensor("window"), np.int64) - shard.window_start) * self.ctx_len
                rows += _np(f.get_tensor("position"), np.int64)
                vals = _np(f.get_tensor("value"), np.float32)
            n_rows = (shard.window_stop - shard.window_start) * self.ctx_len
            idx = index_dtype(max(vals.size, n_rows, self.d_sae))  # int64 once a shard passes 2³¹ − 1 entries
            # entries sorted by latent are the CSC layout of [positions, d_sae]
            csc = sp.csc_matrix((vals, rows.astype(idx), ptr.astype(idx)), shape=(n_rows, self.d_sae))
            yield ShardMatrix(shard.window_start, shard.window_stop, csc.tocsr())

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def summary(self) -> dict[str, Any]:
        """tokens, dead latents, mean L0 and size on disk."""
        return {"n_text_tokens": self.n_tokens, "n_windows": self.n_windows, "d_sae": self.d_sae,
                "n_dead": self.cfg["n_dead"], "mean_l0": self.cfg["mean_l0"], "disk_bytes": self.disk_bytes(),
                "hookpoint": self.cfg["hookpoint"], "excluded": self.cfg["excluded"]}
