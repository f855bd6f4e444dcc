"""Dictionaries on the Hugging Face Hub: `org/repo[/sub/path][@revision]`, downloaded file by file.

Only the files of the one selected dictionary are fetched (`hf_hub_download` into Hugging
Face's cache: `HF_HOME` / `HF_HUB_CACHE` or `cache_dir`), never the whole repo. The repo's
file list is asked once per (endpoint, repo, revision) and kept beside the cache with the
commit hash it was listed at, so a second call resolves and loads without a request and
`HF_HUB_OFFLINE=1` works from the cache. `HF_TOKEN` is read by huggingface_hub; saelab
never logs or saves it. Downloads land under a temporary name and are renamed when
complete (huggingface_hub's own protocol), so a partial file is never read as a dictionary.
"""

from __future__ import annotations

import json
import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .._io import write_json
from ..errors import ConfigError, FormatError, MissingPackageError, first_line

log = logging.getLogger(__name__)

_SPEC = re.compile(r"^(?P<org>[A-Za-z0-9][\w.-]*)/(?P<name>[\w.-]+)(?:@(?P<rev1>[^/]+))?"
                   r"(?P<sub>(?:/[^@]+)?)(?:@(?P<rev2>.+))?$")
_DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class HubSpec:
    """A dictionary spec on the Hub."""

    repo: str
    """`org/name`."""

    path: str = ""
    """Folder inside the repo ('' for the root)."""

    revision: str | None = None
    """Branch, tag or commit; None means main."""


def parse_hub_spec(spec: str) -> HubSpec | None:
    """`org/repo`, `org/repo/sub/path`, `org/repo@rev/sub`, `org/repo/sub@rev`, with or without `hf://`;
    None when `spec` is not of that shape."""
    text = spec.removeprefix("hf://")
    m = _SPEC.match(text)
    if m is None or (m["rev1"] and m["rev2"]) or m["org"] in (".", ".."):
        return None
    return HubSpec(repo=f"{m['org']}/{m['name']}", path=m["sub"].strip("/"), revision=m["rev1"] or m["rev2"])


def env_flag(*names: str) -> bool:
    """Whether any of these environment variables is set to a true value (1, true, yes, on), read now."""
    return any((os.environ.get(n) or "").lower() in _TRUE for n in names)


def offline() -> bool:
    return env_flag("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or _DEFAULT_ENDPOINT).rstrip("/")


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Hugging Face's hub cache as huggingface_hub would choose it now (env read at call time)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _listing_file(cache: Path, repo: str, revision: str | None) -> Path:
    host = re.sub(r"[^\w.-]+", "_", endpoint().split("://", 1)[-1])
    rev = re.sub(r"[^\w.-]+", "_", revision or "main")
    return cache / ".saelab-listings" / host / f"{repo.replace('/', '--')}@{rev}.json"


def repo_listing(repo: str, revision: str | None, cache_dir: str | os.PathLike | None = None) -> tuple[str, list[str]]:
    """(commit hash, every file path) of a repo at a revision: from saelab's record of an earlier call, else
    one request to the Hub's API. Raises FormatError / ConfigError with one line on every failure."""
    cache = hub_cache_dir(cache_dir)
    record = _listing_file(cache, repo, revision)
    if record.is_file():
        try:
            data = json.loads(record.read_text())
            return data["sha"], list(data["files"])
        except (ValueError, KeyError, TypeError):
            log.warning("%s is unreadable; listing %s again", record, repo)
    if offline():
        raise FormatError(f"{repo}{'@' + revision if revision else ''}: HF_HUB_OFFLINE is set and this repo has not "
                          f"been resolved into the cache ({cache}) yet; run once online, or unset HF_HUB_OFFLINE.")
    from huggingface_hub import HfApi

    with _hub_errors(repo, revision):
        info = HfApi(endpoint=endpoint()).model_info(repo, revision=revision)
    files = [s.rfilename for s in (info.siblings or [])]
    write_json(record, {"repo": repo, "revision": revision, "sha": info.sha, "files": files})
    return str(info.sha), files


def download(repo: str, sha: str, files: tuple[str, ...], cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Local paths of `files` of `repo` at commit `sha`, downloaded once; cached files make no request."""
    from huggingface_hub import hf_hub_download

    paths = []
    for f in files:
        with _hub_errors(repo, sha, f):
            paths.append(Path(hf_hub_download(repo, f, revision=sha, cache_dir=hub_cache_dir(cache_dir),
                                              endpoint=endpoint(), local_files_only=offline())))
    return paths


@contextmanager
def _hub_errors(repo: str, revision: str | None, file: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub's and the network's exceptions into one-line saelab errors."""
    from huggingface_hub import errors as e

    what = f"{repo}{'@' + revision if revision else ''}"
    try:
        yield
    except e.GatedRepoError:
        raise ConfigError(f"{what}: a gated repo; accept its terms on its Hub page, then set HF_TOKEN to a token "
                          "of that account.") from None
    except e.RepositoryNotFoundError:
        raise ConfigError(f"{what}: no such repo on {endpoint()} (or it is private: set HF_TOKEN); give org/name "
                          "as on its Hub page, a local path, or a dictionary of the workspace.") from None
    except e.RevisionNotFoundError:
        raise ConfigError(f"{what}: revision {revision!r} not found; give a branch, tag or commit hash of "
                          f"{repo} (or leave @revision out for main).") from None
    except e.LocalEntryNotFoundError:
        raise FormatError(f"{what}: {file or 'the repo'} is not in the Hugging Face cache and HF_HUB_OFFLINE "
                          "is set; run once online, or unset HF_HUB_OFFLINE.") from None
    except e.EntryNotFoundError as exc:
        raise FormatError(f"{what}: {file} is listed but could not be fetched ({first_line(exc)}).") from None
    except Exception as exc:  # the network's own errors (httpx, OSError), whatever the client raises them as
        network = isinstance(exc, (OSError, e.HfHubHTTPError)) or type(exc).__module__.startswith(("httpx", "requests"))
        if not network:
            raise
        raise FormatError(f"{what}: could not download from {endpoint()} ({first_line(exc)}); check the "
                          "network, or set HF_HUB_OFFLINE=1 to use what is cached.") from None


def saelens_to_hub(spec: str) -> HubSpec:
    """`saelens:RELEASE/SAE_ID` through SAELens's own registry (needs `sae-lens`)."""
    body = spec.removeprefix("saelens:")
    release, _, sae_id = body.partition("/")
    if not release or not sae_id:
        raise ConfigError(f"dictionary: got {spec!r}; a SAELens spec is saelens:RELEASE/SAE_ID, e.g. "
                          "saelens:gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical.")
    try:
        from sae_lens import get_pretrained_saes_directory
    except ImportError:
        hint = _saelens_hint(release, sae_id)
        raise MissingPackageError(f"dictionary {spec!r}: SAELens releases are resolved through SAELens's registry, "
                                  f"and sae-lens is not installed (pip install sae-lens); or give the Hub form"
                                  f"{hint}.") from None
    directory = get_pretrained_saes_directory()
    if release not in directory:
        near = sorted(r for r in directory if release.split("-")[0] in r)[:12] or sorted(directory)[:12]
        raise ConfigError(f"dictionary {spec!r}: SAELens has no release {release!r}; some it has: {', '.join(near)}.")
    lookup = directory[release]
    if sae_id not in lookup.saes_map:
        ids = list(lookup.saes_map)
        raise ConfigError(f"dictionary {spec!r}: release {release} has no SAE {sae_id!r}; it has {len(ids)}: "
                          f"{', '.join(ids[:12])}{', …' if len(ids) > 12 else ''}.")
    return HubSpec(repo=lookup.repo_id, path=lookup.saes_map[sae_id].strip("/"))


def _saelens_hint(release: str, sae_id: str) -> str:
    m = re.fullmatch(r"(gemma-scope-\d+b-(?:pt|it)-(?:res|mlp|att|transcoders))(?:-canonical)?", release)
    layer = re.search(r"layer_(\d+)", sae_id)
    width = re.search(r"width_(\w+)", sae_id)
    if m and layer and width:
        return (f" (for this release: google/{m.group(1)} --layer {layer.group(1)} --width {width.group(1)} "
                "--l0 NUMBER, the average_l0_* nearest NUMBER)")
    return " org/repo/PATH (the release's repo_id and the SAE's path in SAELens's pretrained_saes.yaml)"
