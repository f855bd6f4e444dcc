"""Neuronpedia's public explanation exports, by id: `neuronpedia:MODEL_ID/SAE_ID[/FOLDER]`.

Neuronpedia publishes its data in the S3 bucket `neuronpedia-datasets` (no account needed;
https://docs.neuronpedia.org/api-and-data/exports), laid out as

    v1/<modelId>/<saeId>/explanations/batch-0.jsonl.gz, batch-1.jsonl.gz, ...

with the same ids as the website (`gemma-2-2b/20-gemmascope-res-16k`). Some SAEs have
further folders of one explainer each (`explanations-gpt-4o-mini/`): name one as FOLDER.
The folder's files are found with S3's ListObjectsV2 (`?list-type=2&prefix=...`).

The export is downloaded once into `<saelab cache>/neuronpedia/<modelId>/<saeId>/<FOLDER>/`:
into a temporary directory first, every file checked against the listed size and read to
its gzip end, then renamed into place, so an interrupted or truncated download is never
read. A cached export makes no request. `SAELAB_OFFLINE=1` or `HF_HUB_OFFLINE=1`: the
cache only. `SAELAB_NEURONPEDIA_URL` replaces the bucket's URL (a mirror, or a test server).
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from ..coders.hub import env_flag
from ..errors import ConfigError
from ..models.embedded import cache_dir

log = logging.getLogger(__name__)
PREFIX = "neuronpedia:"
DEFAULT_URL = "https://neuronpedia-datasets.s3.us-east-1.amazonaws.com"
_ID = re.compile(r"^[A-Za-z0-9][\w.-]*$")
_TIMEOUT_S = 60
_LISTING = "listing.json"  # written last into the download directory: the export is whole


@dataclass(frozen=True)
class NeuronpediaId:
    """Which export: the website's model id and SAE (source) id, and the explanations folder."""

    model: str
    """Neuronpedia model id, e.g. `gemma-2-2b`."""
    sae: str
    """Neuronpedia SAE (source) id, e.g. `20-gemmascope-res-16k`."""
    folder: str = "explanations"
    """`explanations`, or one explainer's folder such as `explanations-gpt-4o-mini`."""

    @property
    def prefix(self) -> str:
        return f"v1/{self.model}/{self.sae}/{self.folder}/"

    def __str__(self) -> str:
        tail = "" if self.folder == "explanations" else f"/{self.folder}"
        return f"{PREFIX}{self.model}/{self.sae}{tail}"


def is_neuronpedia_id(spec: object) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def parse_id(spec: str) -> NeuronpediaId:
    """`neuronpedia:gemma-2-2b/20-gemmascope-res-16k[/explanations-gpt-4o-mini]` → NeuronpediaId."""
    parts = spec.removeprefix(PREFIX).strip("/").split("/")
    if len(parts) not in (2, 3) or not all(_ID.match(p) for p in parts) or \
            (len(parts) == 3 and not parts[2].startswith("explanations")):
        raise ConfigError(f"explanations: got {spec!r}; expected neuronpedia:MODEL_ID/SAE_ID with the ids of the "
                          "feature pages on neuronpedia.org, e.g. neuronpedia:gemma-2-2b/20-gemmascope-res-16k "
                          "(optionally /explanations-<explainer>).")
    return NeuronpediaId(*parts)


def base_url() -> str:
    return (os.environ.get("SAELAB_NEURONPEDIA_URL") or DEFAULT_URL).rstrip("/")


def offline() -> bool:
    return env_flag("SAELAB_OFFLINE", "HF_HUB_OFFLINE")


def export_dir(np_id: NeuronpediaId, cache: Path | None = None) -> Path:
    """Where the export is (or will be) cached."""
    return (cache or cache_dir()) / "neuronpedia" / np_id.model / np_id.sae / np_id.folder


def fetch_export(spec: str | NeuronpediaId, cache: Path | None = None) -> Path:
    """The directory holding the export's `batch-N.jsonl.gz` files, downloaded on the first call.

    Example:
        >>> fetch_export("neuronpedia:gemma-2-2b/20-gemmascope-res-16k")
        PosixPath('~/.cache/saelab/neuronpedia/gemma-2-2b/20-gemmascope-res-16k/explanations')
    """
    np_id = parse_id(spec) if isinstance(spec, str) else spec
    target = export_dir(np_id, cache)
    if (target / _LISTING).is_file():
        return target
    if offline():
        raise ConfigError(f"explanations: {np_id} is not in the cache ({target}) and downloads are off "
                          "(SAELAB_OFFLINE or HF_HUB_OFFLINE is set); run once online, or unset it.")
    keys = _list(np_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{np_id.folder}.partial-", dir=target.parent))
    try:
        for key, size in keys:
            _download(f"{base_url()}/{urllib.parse.quote(key)}", tmp / key.rsplit("/", 1)[-1], size, np_id)
        (tmp / _LISTING).write_text(json.dumps({"id": str(np_id), "url": base_url(), "files": keys}))
        if (target / _LISTING).is_file():  # another process finished the same download first
            return target
        if target.exists():  # a leftover without its listing: never whole
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("%s: %d files downloaded into %s", np_id, len(keys), target)
    return target


def _get(url: str, np_id: NeuronpediaId) -> urllib.request.addinfourl:
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "saelab"}),
                                      timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code in (403, 404):  # S3 answers 403 for a missing key when listing is not allowed
            raise ConfigError(f"explanations: {np_id} has no explanation export at {url} (HTTP {e.code}); check "
                              f"the model and SAE ids on neuronpedia.org (its feature pages read "
                              f"/MODEL_ID/SAE_ID/INDEX), or download the export folder yourself and give "
                              f"its path.") from None
        raise ConfigError(f"explanations: downloading {np_id} failed: HTTP {e.code} from {url}.") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ConfigError(f"explanations: cannot reach {base_url()} for {np_id} ({reason}); check the network, "
                          f"or set SAELAB_OFFLINE=1 to use the cache only.") from None


def _list(np_id: NeuronpediaId) -> list[tuple[str, int]]:
    """(key, size) of every `.jsonl.gz` under the export's folder, through S3's paged listing."""
    keys: list[tuple[str, int]] = []
    token: str | None = None
    while True:
        query = {"list-type": "2", "prefix": np_id.prefix} | ({"continuation-token": token} if token else {})
        url = f"{base_url()}/?{urllib.parse.urlencode(query)}"
        with _get(url, np_id) as r:
            body = r.read()
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            raise ConfigError(f"explanations: {url} did not answer with an S3 listing (XML); is "
                              f"SAELAB_NEURONPEDIA_URL ({base_url()}) the export bucket?") from None
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        for item in root.iter(f"{ns}Contents"):
            key, size = item.findtext(f"{ns}Key") or "", int(item.findtext(f"{ns}Size") or -1)
            if key.startswith(np_id.prefix) and key.endswith(".jsonl.gz") and "/" not in key[len(np_id.prefix):]:
                keys.append((key, size))
        token = root.findtext(f"{ns}NextContinuationToken")
        if (root.findtext(f"{ns}IsTruncated") or "").lower() != "true" or not token:
            break
    if not keys:
        raise ConfigError(f"explanations: Neuronpedia has no explanation export for {np_id} (nothing under "
                          f"{base_url()}/{np_id.prefix}); check the model and SAE ids on neuronpedia.org "
                          "(e.g. neuronpedia:gemma-2-2b/20-gemmascope-res-16k), or give an export folder's path.")
    return sorted(keys, key=lambda k: _batch_number(k[0]))


def _batch_number(key: str) -> tuple[int, str]:
    m = re.search(r"(\d+)\.jsonl\.gz$", key)
    return (int(m.group(1)) if m else -1, key)


def _download(url: str, dest: Path, size: int, np_id: NeuronpediaId) -> None:
    """Stream `url` into `dest`; refuse a body shorter than announced or a gzip that does not end."""
    with _get(url, np_id) as r, open(dest, "wb") as f:
        try:
            shutil.copyfileobj(r, f, 1 << 20)
        except (http.client.HTTPException, OSError) as e:  # IncompleteRead: the connection closed early
            raise ConfigError(f"explanations: the download of {url} broke off ({e}); run again.") from None
    got = dest.stat().st_size
    if size >= 0 and got != size:
        raise ConfigError(f"explanations: {url} gave {got:,} bytes, the listing says {size:,}: the download was "
                          "cut short; run again.")
    try:
        with gzip.open(dest, "rb") as g:
            while g.read(1 << 20):
                pass
    except (EOFError, OSError, zlib.error) as e:
        raise ConfigError(f"explanations: {url} is not a whole gzip file ({e}); run again.") from None
