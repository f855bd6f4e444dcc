"""The dictionary behind a latent store: the workspace's own, or the one its cfg.json records.

A store built from a path or a Hub repo (`saelab cache -d org/repo --hookpoint layers.6`) has no
`dictionaries/NAME/` in the workspace; its cfg.json records where the dictionary came from
(`dictionary_source`: spec, selectors, local path, Hub repo and commit), and readers that need the
weights (matching, the report's decoder directions) load it from there: the local copy when it is
still on disk, else the same spec at the same commit.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .._io import CFG_NAME, read_json
from ..coders import Selector, SparseCoder, load_dictionary
from ..workspace import Workspace


def store_source(workspace: Workspace, name: str) -> dict[str, Any] | None:
    """The `dictionary_source` a store of the workspace records, else None."""
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
