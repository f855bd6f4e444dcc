"""The store's bookkeeping: identity (cfg.json), finished shards (manifest), totals (stats).

Files of a store directory `latents/NAME/`:
- `cfg.json`: what the store was made from (token windows hash, dictionary hash,
  hookpoint, model, value dtype, sharding) and, once complete, its totals;
- `manifest.json`: the finished shards. Under torchrun each rank lists its own shards in
  `manifest.rank-R.json`; after a barrier rank 0 merges them into `manifest.json`;
- `shards/shard-NNNNN.safetensors` (see `shard.py`); `stats.safetensors`: per-latent totals.

A shard is renamed into place before it is listed, so a listed shard is whole; a shard
on disk but not listed (killed between rename and listing) is simply computed again.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .._io import CFG_NAME, atomic_path, read_json_object, state_dict_hash, write_cfg, write_json
from ..errors import ArtifactError, FormatError
from .shard import ShardRecord

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
STATS = "stats.safetensors"
# fields that must match for a run to resume (or extend) an existing store
IDENTITY_FIELDS = ("tokens_hash", "dictionary_hash", "hookpoint", "d_in", "d_sae", "model", "value_dtype",
                   "shard_windows", "n_windows", "ctx_len", "excluded")


def dictionary_hash(coder: Any) -> str:
    """sha256 of a dictionary's tensors (names, dtypes, shapes, bytes): its identity."""
    return state_dict_hash(coder)


def prepare_store(store: Path, identity: dict[str, Any], overwrite: bool) -> None:
    """Create the store, or check that the existing one was made the same way (rank 0 only)."""
    cfg_path = store / CFG_NAME
    if cfg_path.exists() and overwrite:
        shutil.rmtree(store)
    if cfg_path.exists():
        _check_identity(store, read_json_object(cfg_path, "a latent store's config"), identity)
    else:
        write_cfg(store, {**identity, "complete": False})
    for stale in store.glob("**/.*.tmp"):  # temporaries of a killed run: never read, removed here
        stale.unlink()


def _check_identity(store: Path, cfg: dict[str, Any], identity: dict[str, Any]) -> None:
    keep = ("keep it and cache under another store name (--dict NEW_NAME=SPEC), or replace it with --overwrite "
            "(Python: overwrite=True)")
    if cfg.get("tokens_hash") != identity["tokens_hash"]:
        raise ArtifactError(
            f"{store} was cached on token windows {cfg.get('tokens_hash')}, but these windows are "
            f"{identity['tokens_hash']}: a store never mixes windows; {keep}.")
    if cfg.get("dictionary_hash") != identity["dictionary_hash"]:
        raise ArtifactError(
            f"{store} was cached from other weights (dictionary_hash {cfg.get('dictionary_hash')!r}, these are "
            f"{identity['dictionary_hash']!r}: the dictionary was trained or replaced since); {keep}.")
    for field in IDENTITY_FIELDS:
        if cfg.get(field) != identity[field]:
            raise ArtifactError(
                f"{store} was cached with {field}={cfg.get(field)!r}, this run has {identity[field]!r}: rerun with "
                f"the same settings to resume it, or {keep}.")


def read_manifest(path: Path) -> list[ShardRecord]:
    """The shards a manifest lists; a damaged manifest raises FormatError naming it and the fix."""
    data = read_json_object(path, "a latent store's manifest")
    try:
        return [ShardRecord(**r) for r in data["shards"]]
    except (KeyError, TypeError) as e:
        raise FormatError(f"{path}: not a latent store's manifest ({type(e).__name__}: {e}); expected "
                          '{"shards": [{"index": …, "file": …, …}, …]}. Rebuild the store: saelab cache -d NAME '
                          "--overwrite.") from None


def finished_shards(store: Path) -> dict[int, ShardRecord]:
    """Shards listed in `manifest.json` and in any per-rank manifest."""
    records: dict[int, ShardRecord] = {}
    for path in [store / MANIFEST, *sorted(store.glob("manifest.rank-*.json"))]:
        if path.exists():
            records.update((r.index, r) for r in read_manifest(path))
    return records


def manifest_path(store: Path, rank: int, world: int) -> Path:
    return store / MANIFEST if world == 1 else store / f"manifest.rank-{rank}.json"


def write_manifest(path: Path, records: dict[int, ShardRecord], n_shards: int) -> None:
    write_json(path, {"n_shards": n_shards, "shards": [records[i].to_json() for i in sorted(records)]})


def finalize_store(store: Path, identity: dict[str, Any], n_shards: int) -> dict[str, Any]:
    """Merge the manifests, sum per-latent totals into `stats.safetensors`, mark complete (rank 0)."""
    records = finished_shards(store)
    missing = sorted(set(range(n_shards)) - set(records))
    assert not missing, f"shards never written: {missing[:10]}"
    write_manifest(store / MANIFEST, records, n_shards)
    for part in store.glob("manifest.rank-*.json"):
        part.unlink()
    d_sae = identity["d_sae"]
    counts = torch.zeros(d_sae, dtype=torch.int64)
    window_counts = torch.zeros(d_sae, dtype=torch.int64)
    latent_max = torch.zeros(d_sae, dtype=torch.float32)
    for i in range(n_shards):
        with safe_open(str(store / records[i].file), "pt") as f:
            counts += f.get_tensor("latent_ptr").diff()
            window_counts += f.get_tensor("window_ptr").diff()
            latent_max = torch.maximum(latent_max, f.get_tensor("latent_max"))
    with atomic_path(store / STATS) as tmp:
        save_file({"counts": counts, "window_counts": window_counts, "latent_max": latent_max}, str(tmp))
    n_tokens = sum(r.n_text_tokens for r in records.values())
    totals = {"n_shards": n_shards, "n_text_tokens": n_tokens, "n_entries": int(counts.sum()),
              "n_dead": int((counts == 0).sum()), "mean_l0": float(counts.sum()) / max(n_tokens, 1)}
    write_cfg(store, {**identity, "complete": True, **totals})  # last: its flag means the store is whole
    return totals
