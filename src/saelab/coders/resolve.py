"""One dictionary spec, resolved the same way by every command.

A spec is, in this order:
- a dictionary of the workspace (`full`);
- a local path: a dictionary directory or file, or the root of a downloaded tree, where
  the selectors pick one (`./gemma_scope_2b --layer 17 --width 16k --l0 105`);
- `saelens:RELEASE/SAE_ID`, through SAELens's registry;
- a Hub repo: `org/repo`, `org/repo/sub/path`, `@revision`, with or without `hf://`
  (`EleutherAI/sae-SmolLM2-135M-64x --hookpoint layers.6`).

`resolve_dictionary` returns where the one dictionary's files are on disk, the name its
artifacts take, and where it came from (repo, commit hash, path), which every result's
cfg.json records.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, FormatError
from ..workspace import is_name
from . import hub
from .formats import FORMATS
from .tree import Candidate, Selector, find_dictionaries, select

__all__ = ["ResolvedDictionary", "Selector", "resolve_dictionary", "detect_format", "looked_for"]


@dataclass(frozen=True)
class ResolvedDictionary:
    """One dictionary found from a spec."""

    name: str
    """Name for its artifacts (latent store, evals): the workspace name, or one built from the path."""

    path: Path
    """The local directory (or file) holding its files."""

    source: dict[str, Any] = field(default_factory=dict)
    """Where it came from: spec, kind (workspace | path | hub | saelens), and for the Hub repo, revision
    (the commit hash), path in the repo; the selectors used."""

    format: Any = None
    """The format module, when resolving already read it from the files (else `load_resolved` detects it)."""


def looked_for() -> str:
    return "; ".join(f"{m.NAME}: {' + '.join(m.FILES)}" for m in FORMATS)


def detect_format(path: Path):
    """The format module whose files `path` holds, else None."""
    return next((m for m in FORMATS if m.detect(path)), None)


def _name_part(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("._") or "dictionary"


def _local_files(root: Path) -> list[str]:
    """Every file under `root`, posix paths relative to it (hidden folders skipped)."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = Path(folder).relative_to(root).as_posix()
        out += [f if rel == "." else f"{rel}/{f}" for f in files]
    return out


def _resolve_local(path: Path, sel: Selector, spec: str) -> ResolvedDictionary:
    source: dict[str, Any] = {"spec": spec, "kind": "path", **({"selector": sel.as_dict()} if not sel.empty else {})}
    fmt = detect_format(path)
    if fmt is not None:  # one dictionary: selectors choose within trees, there is nothing to choose here
        return ResolvedDictionary(path.resolve().name, path, {**source, "path": str(path.resolve())}, fmt)
    if not path.is_dir():
        raise FormatError(f"{path}: not a dictionary in any known format; looked for {looked_for()}.")
    candidates = find_dictionaries(_local_files(path), FORMATS, context=path.resolve().as_posix())
    if not candidates:
        raise FormatError(f"{path}: not a dictionary in any known format, nor a tree holding one; looked for "
                          f"{looked_for()}.")
    chosen = select(candidates, sel, str(path))
    where = path / chosen.path if chosen.path else path
    name = "__".join(_name_part(p) for p in chosen.path.split("/")) if chosen.path else path.resolve().name
    if chosen.path and not _hookpoint_folder(chosen):
        name = f"{_name_part(path.resolve().name)}__{name}"
    return ResolvedDictionary(name, where, {**source, "path": str(where.resolve())})


def _hookpoint_folder(c: Candidate) -> bool:
    """A sparsify-style run folder (`layers.6`): its own name says which dictionary it is."""
    return "/" not in c.path and bool(re.match(r"(model\.)?(layers|blocks|h)\.\d+", c.path))


def _resolve_hub(h: hub.HubSpec, sel: Selector, spec: str, kind: str,
                 cache_dir: str | os.PathLike | None) -> ResolvedDictionary:
    sha, files = hub.repo_listing(h.repo, h.revision, cache_dir)
    prefix = f"{h.path}/" if h.path else ""
    under = [f[len(prefix):] for f in files if f.startswith(prefix)]
    where = f"{h.repo}{'/' + h.path if h.path else ''}"
    if not under:
        raise FormatError(f"{where}: the repo has no files under {h.path!r}; its top-level entries: "
                          f"{', '.join(sorted({f.split('/')[0] for f in files})[:20]) or 'none'}.")
    chosen = select(find_dictionaries(under, FORMATS, context=f"{h.repo}/{h.path}"), sel, where)
    local = hub.download(h.repo, sha, tuple(prefix + f for f in chosen.files), cache_dir)
    in_repo = "/".join(p for p in (h.path, chosen.path) if p)
    depth = len(chosen.files[0].split("/")) - (len(chosen.path.split("/")) if chosen.path else 0)
    folder = local[0]
    for _ in range(depth):
        folder = folder.parent
    name = "__".join(_name_part(p) for p in [h.repo.split("/")[1], *in_repo.split("/")] if p)
    source = {"spec": spec, "kind": kind, "repo": h.repo, "revision": sha, "requested_revision": h.revision,
              "path": in_repo, "format": chosen.format, **({"selector": sel.as_dict()} if not sel.empty else {})}
    if hub.endpoint() != "https://huggingface.co":
        source["endpoint"] = hub.endpoint()
    return ResolvedDictionary(name, folder, source)


def resolve_dictionary(spec: str | os.PathLike, workspace: Any = None, selector: Selector | None = None,
                       cache_dir: str | os.PathLike | None = None, arg: str = "dictionary") -> ResolvedDictionary:
    """Where the dictionary `spec` names lives on disk, downloading it first when it is on the Hub.

    Args:
        spec: a workspace dictionary name, a local path, `saelens:RELEASE/ID`, or `[hf://]org/repo[/path][@rev]`.
        workspace: a `saelab.workspace.Workspace` whose dictionaries are looked up first (None: skip).
        selector: picks one dictionary of a tree (hookpoint, layer, width, l0, site).
        cache_dir: Hugging Face cache for downloads (default: HF_HUB_CACHE / HF_HOME).
        arg: how error messages name the argument (`--dict` in the CLI).

    Example:
        >>> d = resolve_dictionary("google/gemma-scope-2b-pt-res", selector=Selector(layer=20, width="16k", l0=71))
        >>> d.path, d.source["revision"]
    """
    sel = selector or Selector()
    text = os.fspath(spec)
    if not text:
        raise ConfigError(f"{arg}: got an empty spec; give a workspace name, a path or a Hub repo (org/name).")
    if workspace is not None and is_name(text) and workspace.dictionary(text).is_dir():
        return ResolvedDictionary(text, workspace.dictionary(text), {"spec": text, "kind": "workspace"})
    path = Path(text).expanduser()
    if path.exists():
        return _resolve_local(path, sel, text)
    if text.startswith("saelens:"):
        return _resolve_hub(hub.saelens_to_hub(text), sel, text, "saelens", cache_dir)
    parsed = hub.parse_hub_spec(text)
    if parsed is not None and not text.startswith((".", "/", "~")):
        return _resolve_hub(parsed, sel, text, "hub", cache_dir)
    if text.startswith((".", "/", "~")) or Path(text).suffix in (".npz", ".pt", ".safetensors", ".json"):
        raise FormatError(f"dictionary path {text!r} does not exist.")
    have = ""
    if workspace is not None and (workspace.root / "dictionaries").is_dir():
        have = ", ".join(sorted(p.name for p in (workspace.root / "dictionaries").iterdir())[:20])
        have = f" (the workspace has: {have or 'none yet'})"
    raise ConfigError(f"{arg}: got {text!r}, which is neither a dictionary of the workspace{have}, an existing "
                      "path, a Hub repo (org/name, org/name/PATH, @REVISION), nor saelens:RELEASE/ID.")
