"""The `cooc` stage: latent store → co-occurrence counts and top-k neighbours.

On disk (`workspace/cooc/NAME/`): `counts.safetensors` (N, per-latent window counts, the
strict upper triangle of C as CSR), `neighbours.safetensors` (for each of φ, Jaccard,
NPMI: `<measure>_index` int32 [d_sae, top_k] padded with −1 and `<measure>_score`
float32 [d_sae, top_k]), `cfg.json` (config, store identity, N, skipped-token counts), written last.
A rerun with the same settings on the same store reads the counts back; other settings, or a store
rebuilt since, are refused without `overwrite`, naming the difference.

Under torchrun each rank counts its block of co-occurrence windows (token positions at token level);
rank 0 holds the lock, sums the ranks' counts exactly (int64 / int32 integers: the same bytes as one
process) and writes the files; every rank then reads the result back.

Memory at d_sae = 131,072 (P = co-occurring pairs stored, chunk_windows = 1024): nothing of size
d_sae² exists (a dense int64 C would take 137 GB). Counting holds the pair CSR, 8·P bytes (int32
indices and counts; 16·P past 2³¹ − 1 pairs or windows) plus, while a chunk is added, the chunk's
pairs and scipy's output (≈ 3× the pairs at that moment), the chunk's dense 0/1 block (windows ×
active latents float32, ≤ 512 MiB) and one product tile (≤ 256 MiB, its triangle copy and the
non-zero coordinates, ≤ 1 GiB more in the worst case). Rank 0 of a torchrun adds one rank's partial
at a time (≤ 3× the pairs). The neighbours hold the pairs and their transpose (16·P bytes) and one
dense score block of 256 rows × d_sae float64 (256 MiB). So: ≈ 24·P bytes + ≈ 2 GiB.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from .._io import CFG_NAME, atomic_path, cfg_matches, read_json, read_json_object, write_cfg
from ..data.tokens import TokenWindows, load_token_windows, text_mask
from ..distributed import barrier, block, is_main, on_main, rank_and_world
from ..errors import ArtifactError, ConfigError
from ..latents.source import open_store
from ..latents.store import LatentStore
from ..workspace import Workspace, difference
from .config import CoocConfig
from .counts import CoocCounts, count_tokens, count_windows, sum_partials
from .metrics import MEASURES, top_k_neighbours
from .windows import build_window_map, position_limit

log = logging.getLogger(__name__)
NEIGHBOURS_FILE = "neighbours.safetensors"
PARTIALS = ".partials"  # under torchrun: ranks > 0 leave their counts here for rank 0


@dataclass
class Cooc:
    """A co-occurrence artifact, loaded."""

    path: Path
    counts: CoocCounts
    cfg: dict[str, Any]
    _neighbours: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def neighbours(self, latent: int, measure: str = "phi") -> tuple[np.ndarray, np.ndarray]:
        """(latents int32 [≤ top_k], scores float32 [≤ top_k]) of one latent, best first."""
        if measure not in MEASURES:
            raise ConfigError(f"measure: got {measure!r}; expected one of {', '.join(MEASURES)}.")
        if self._neighbours is None:  # one read, then every latent is a row lookup
            self._neighbours = load_file(str(self.path / NEIGHBOURS_FILE))
        idx, score = self._neighbours[f"{measure}_index"][latent], self._neighbours[f"{measure}_score"][latent]
        return idx[idx >= 0], score[idx >= 0]


def cooc_dir(workspace: Workspace, name: str) -> Path:
    return workspace.cooc(name)


def load_cooc(path: str | Path) -> Cooc:
    path = Path(path)
    if not (path / CFG_NAME).exists():
        raise ArtifactError(f"no co-occurrence counts at {path} (cfg.json missing): run `saelab cooc` first.")
    return Cooc(path, CoocCounts.load(path), read_json_object(path / CFG_NAME, "a co-occurrence run's config"))


def _check_windows(store: LatentStore, windows: TokenWindows) -> None:
    if store.tokens_hash != windows.tokens_hash:
        raise ArtifactError(f"the latent store {store.path} was cached on token windows {store.tokens_hash}, "
                            f"the workspace's are {windows.tokens_hash}: re-run `saelab cache` on this workspace.")


def count(config: CoocConfig, store: LatentStore, windows: TokenWindows) -> tuple[CoocCounts, dict[str, int]]:
    """The co-occurrence counts of `store` (no files written). Under torchrun, this rank's share: a block of
    the co-occurrence windows (token positions at token level); `counts.sum_partials` adds the ranks' shares."""
    _check_windows(store, windows)
    rank, world = rank_and_world()
    doc = windows.doc_index[: store.n_windows].numpy()  # [n_windows, ctx_len]
    if config.level == "token":
        limit = position_limit(doc.reshape(-1), config)
        text = text_mask(windows.tokens[: store.n_windows], tuple(store.cfg["excluded"]), windows.special_ids,
                         windows.bos_id).numpy().reshape(-1)
        counts = count_tokens(store, text, limit, config.chunk_windows, block(limit, rank, world))
        return counts, {"tokens_used": int(text[:limit].sum())}
    wmap = build_window_map(doc, config)
    return count_windows(store, wmap, config.chunk_windows, block(wmap.n_windows, rank, world)), wmap.counts


def write_neighbours(counts: CoocCounts, directory: Path, top_k: int) -> None:
    tensors = {}
    found = top_k_neighbours(counts.pairs, counts.latent_counts, counts.n_windows, top_k)
    for name, (index, score) in found.items():
        tensors[f"{name}_index"], tensors[f"{name}_score"] = index, score
    with atomic_path(directory / NEIGHBOURS_FILE) as tmp:
        save_file(tensors, str(tmp))


def run(config: CoocConfig, workspace: Workspace, dictionary: str, windows: TokenWindows | None = None,
        name: str | None = None, overwrite: bool = False) -> Cooc:
    """Count co-occurrences of the latents of `workspace/latents/<dictionary>` and write
    `workspace/cooc/<name or dictionary>/` (read back when it holds counts of the same settings and store;
    counts of other ones are refused unless `overwrite`).

    Example:
        >>> cooc = run(CoocConfig(k=256), Workspace.at("ws"), "sae6")
        >>> cooc.counts.n_windows, cooc.neighbours(12, "phi")
    """
    out = cooc_dir(workspace, name or dictionary)
    with workspace.lock("cooc", out.name) if is_main() else contextlib.nullcontext():
        store = open_store(workspace, dictionary)
        want = {"artifact": "cooc", "dictionary": dictionary, "tokens_hash": store.tokens_hash,
                "dictionary_hash": store.cfg.get("dictionary_hash"),
                "config": {**asdict(config), "stride": config.effective_stride}}
        if on_main(lambda: _stored(out, want, overwrite)):
            log.info("cooc %s: %s holds these counts already (same settings and store); reusing them",
                     dictionary, out)
            return load_cooc(out)
        windows = windows if windows is not None else load_token_windows(workspace.tokens)
        return _count_and_write(config, store, windows, out, want)


def _stored(out: Path, want: dict[str, Any], overwrite: bool) -> bool:
    """Whether `out` holds counts made from `want` to reuse (not with `overwrite`); counts of other inputs are
    refused without `overwrite`, and unmarked as whole with it."""
    if not (out / CFG_NAME).exists():
        return False
    if not overwrite and cfg_matches(out, want):
        return True
    if not overwrite:
        raise ArtifactError(f"{out} holds co-occurrence counts made from other inputs "
                            f"({difference(read_json(out / CFG_NAME), want)}); rerun with those settings to "
                            "keep them, or replace them with --overwrite.")
    (out / CFG_NAME).unlink()  # first: half-rewritten counts never read as whole
    return False


def _count_and_write(config: CoocConfig, store: LatentStore, windows: TokenWindows, out: Path,
                     want: dict[str, Any]) -> Cooc:
    t0 = time.perf_counter()
    counts, skipped = count(config, store, windows)
    counts = sum_partials(counts, out / PARTIALS)  # every rank's share, on rank 0 (under torchrun)
    if is_main():
        _write(config, store, counts, skipped, out, want, time.perf_counter() - t0)
    barrier()
    return load_cooc(out)


def _write(config: CoocConfig, store: LatentStore, counts: CoocCounts, skipped: dict[str, int], out: Path,
           want: dict[str, Any], seconds: float) -> None:
    shutil.rmtree(out / PARTIALS, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    counts.save(out)
    write_neighbours(counts, out, config.top_k)
    alive = int((counts.latent_counts > 0).sum())
    cfg = {**want, "store": str(store.path), "d_sae": store.d_sae,
           "n_windows": counts.n_windows, "n_pairs": int(counts.pairs.nnz), "n_alive": alive,
           "n_dead": store.d_sae - alive, "counts": skipped, "excluded_positions": store.cfg.get("excluded"),
           "seconds": round(seconds, 3),
           "note": "N (n_windows) is the number of co-occurrence windows in the data, including windows where "
                   "no latent fires; dead = fires in no window."}
    write_cfg(out, cfg)  # last: its presence means the counts are whole
    log.info("cooc %s: N=%d windows, %d pairs, %d dead latents, %.1f s", want["dictionary"], counts.n_windows,
             counts.pairs.nnz, cfg["n_dead"], seconds)
