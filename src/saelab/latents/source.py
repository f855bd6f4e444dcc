"""The dictionary behind a latent store: the workspace's own, or the one its cfg.json records.

A store built from a path or a Hub repo (`saelab cache -d org/repo --hookpoint layers.6`) has no
`dictionaries/NAME/` in the workspace; its cfg.json records where the dictionary came from
(`dictionary_source`: spec, selectors, local path, Hub repo and commit), and readers that need the
weights (matching, the report's decoder directions) load it from there: the local copy when it is
still on disk, else the same spec at the same commit.

A store records the hashes of what it was built from (`tokens_hash`, `dictionary_hash`); `open_store`
checks them against the workspace before anyone reads it: a store of a dictionary trained again since,
or of token windows rebuilt since, is refused with the command that rebuilds it.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

from .._io import CFG_NAME, read_json, state_dict_hash
from ..coders import Selector, SparseCoder, load_dictionary
from ..coders.base import WEIGHTS_NAME
from ..errors import ArtifactError
from ..workspace import Workspace, is_name
from .store import LatentStore


def store_source(workspace: Workspace, name: str) -> dict[str, Any] | None:
    """The `dictionary_source` a store of the workspace records, else None."""
    if not is_name(name):
        return None
    cfg = workspace.latents(name) / CFG_NAME
    if not cfg.is_file():
        return None
    try:
        source = read_json(cfg).get("dictionary_source")
    except (ValueError, AttributeError):
        return None
    return source if isinstance(source, dict) else None


def has_dictionary(workspace: Workspace, name: str) -> bool:
    """Whether `name` is a dictionary of the workspace or a store that records where its dictionary is."""
    if not is_name(name):
        return False
    return (workspace.dictionary(name) / CFG_NAME).exists() or bool((store_source(workspace, name) or {}).get("spec"))


def load_store_dictionary(workspace: Workspace, name: str) -> SparseCoder:
    """The dictionary `name`: `dictionaries/NAME`, else the one the store `latents/NAME` was built from."""
    if (workspace.dictionary(name) / CFG_NAME).exists():
        return load_dictionary(workspace.dictionary(name))
    source = store_source(workspace, name) or {}
    local = Path(source["path"]) if source.get("path") and source.get("kind") == "path" else None
    if local is not None and local.exists():
        return load_dictionary(local)
    spec = source.get("spec", name)
    if source.get("repo") and source.get("revision"):  # the same weights: pin the commit the store was built from
        spec = "/".join(p for p in (source["repo"], source.get("path", "")) if p) + f"@{source['revision']}"
        return load_dictionary(spec)
    fields = {f.name for f in dataclasses.fields(Selector)}
    selector = Selector(**{k: v for k, v in (source.get("selector") or {}).items() if k in fields})
    return load_dictionary(spec, workspace=workspace, selector=selector)


def _own_dictionary(workspace: Workspace, cfg: dict[str, Any]) -> Path | None:
    """The saelab-format dictionary directory a store was built from, when it is one that can change under
    the store (the workspace's own, or a local directory); None for a Hub dictionary (pinned to a commit) and
    for a store that does not record its source (written through the Python API from a coder in memory)."""
    source = cfg.get("dictionary_source")
    if isinstance(source, dict) and source.get("kind") == "workspace" and is_name(source.get("spec")):
        path: Path | None = workspace.dictionary(source["spec"])
    elif isinstance(source, dict) and source.get("kind") == "path" and source.get("path"):
        path = Path(source["path"])
    else:
        path = None
    return path if path is not None and (path / WEIGHTS_NAME).is_file() and (path / CFG_NAME).is_file() else None


@functools.lru_cache(maxsize=64)
def _weights_hash(path: str, stamp: tuple[int, int]) -> str:
    return state_dict_hash(load_dictionary(Path(path)))  # the hash the cache recorded (`dictionary_hash`)


def weights_hash(directory: Path) -> str:
    """`dictionary_hash` of the dictionary in `directory` (cached per file size and modification time)."""
    st = (directory / WEIGHTS_NAME).stat()
    return _weights_hash(str(directory.resolve()), (st.st_size, st.st_mtime_ns))


def rebuild_command(workspace: Workspace, name: str, cfg: dict[str, Any]) -> str:
    """The `saelab cache` command line that rebuilds the store `name` from its dictionary."""
    source = cfg.get("dictionary_source") if isinstance(cfg.get("dictionary_source"), dict) else {}
    spec = source.get("spec") or name
    dict_arg = spec if spec == name else f"{name}={spec}"
    model = cfg.get("model") or {}
    return (f"saelab cache -d {dict_arg}" + (f" -m {model['path']}" if model.get("path") else "")
            + (f" --dtype {model['dtype']}" if model.get("dtype") else "") + f" -w {workspace.root} "
            f"--shard-windows {cfg.get('shard_windows')} --value-dtype {cfg.get('value_dtype')} --overwrite")


def store_problem(workspace: Workspace, name: str, store: LatentStore) -> str | None:
    """Why the store `latents/NAME` no longer shows what the workspace holds (token windows rebuilt, or its
    dictionary's weights changed since it was cached), else None."""
    tokens_cfg = workspace.tokens / CFG_NAME
    now = read_json(tokens_cfg).get("tokens_hash") if tokens_cfg.is_file() else None
    if now is not None and now != store.tokens_hash:
        return (f"{store.path} was cached on token windows {store.tokens_hash}, but the workspace's windows are "
                f"{now} now (rebuilt since)")
    own = _own_dictionary(workspace, store.cfg)
    if own is not None:
        current = weights_hash(own)
        if current != store.cfg.get("dictionary_hash"):
            return (f"{store.path} was cached from other weights than {own} holds now (dictionary_hash "
                    f"{store.cfg.get('dictionary_hash')}, now {current}: trained or replaced since)")
    return None


def open_store(workspace: Workspace, name: str) -> LatentStore:
    """The complete latent store `latents/NAME`, checked against the workspace's token windows and its
    dictionary's current weights; a stale store is an ArtifactError with the command that rebuilds it.

    Example:
        >>> store = open_store(Workspace.at("ws"), "full")
    """
    store = LatentStore(workspace.latents(name))
    problem = store_problem(workspace, name, store)
    if problem:
        raise ArtifactError(f"{problem}: its activations are stale; rebuild it: "
                            f"{rebuild_command(workspace, name, store.cfg)}")
    return store
