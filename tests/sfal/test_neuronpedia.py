"""`neuronpedia:MODEL_ID/SAE_ID`: Neuronpedia's public export, downloaded once from a local server
laid out like the `neuronpedia-datasets` bucket (S3 ListObjectsV2 listing + v1/<model>/<sae>/explanations/)."""

from __future__ import annotations

import gzip
import importlib
import json
import os
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from saelab.errors import ConfigError
from saelab.sfal import load_explanations
from saelab.sfal.neuronpedia import export_dir, fetch_export, parse_id

from ..conftest import run_cli
from .test_sfal import FakeEmbedder, _grouped_workspace

MODEL, SAE = "gemma-2-2b", "20-gemmascope-res-16k"
PREFIX = f"v1/{MODEL}/{SAE}/explanations/"
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def _batch(indices, explainer="gpt-4o-mini"):
    records = [{"id": f"x{i}", "modelId": MODEL, "layer": SAE, "index": str(i), "description": f"latent {i} text",
                "typeName": "oai_token-act-pair", "explanationModelName": explainer, "authorId": "a"}
               for i in indices]
    return gzip.compress(("\n".join(json.dumps(r) for r in records) + "\n").encode())


class Bucket:
    """Keys → bytes, served like S3: a paged XML listing at `/?list-type=2&prefix=…`, objects at `/<key>`."""

    page_size = 2  # small, so the listing's continuation tokens are exercised

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.cut_short: set[str] = set()  # keys whose connection closes half-way through the body

    def listing(self, query: dict[str, list[str]]) -> bytes:
        prefix = query.get("prefix", [""])[0]
        keys = sorted(k for k in self.files if k.startswith(prefix))
        start = int(query.get("continuation-token", ["0"])[0])
        page = keys[start:start + self.page_size]
        more = start + self.page_size < len(keys)
        items = "".join(f"<Contents><Key>{k}</Key><Size>{len(self.files[k])}</Size></Contents>" for k in page)
        token = f"<NextContinuationToken>{start + self.page_size}</NextContinuationToken>" if more else ""
        return (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="{S3_NS}"><Name>b</Name>'
                f"<Prefix>{prefix}</Prefix><KeyCount>{len(page)}</KeyCount><IsTruncated>{str(more).lower()}"
                f"</IsTruncated>{token}{items}</ListBucketResult>").encode()


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    b = Bucket()
    b.files[PREFIX + "batch-0.jsonl.gz"] = _batch(range(0, 4))
    b.files[PREFIX + "batch-1.jsonl.gz"] = _batch(range(4, 8))
    b.files[PREFIX + "batch-2.jsonl.gz"] = _batch(range(8, 10))
    b.files[f"v1/{MODEL}/{SAE}/explanations-claude/batch-0.jsonl.gz"] = _batch(range(3), explainer="claude")
    b.files[f"v1/{MODEL}/{SAE}/features/batch-0.jsonl.gz"] = gzip.compress(b'{"not": "an explanation"}\n')

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            b.requests.append(self.path)
            if url.path == "/" and "list-type=2" in url.query:
                body = b.listing(urllib.parse.parse_qs(url.query))
            elif (key := urllib.parse.unquote(url.path.lstrip("/"))) in b.files:
                body = b.files[key]
                if key in b.cut_short:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SAELAB_NEURONPEDIA_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SAELAB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield b
    server.shutdown()
    server.server_close()
    thread.join()


SPEC = f"neuronpedia:{MODEL}/{SAE}"


def test_first_call_downloads_the_export_and_the_second_makes_no_request(bucket, tmp_path):
    e = load_explanations(SPEC, d_sae=16)
    assert e.texts == {i: f"latent {i} text" for i in range(10)} and e.kind == "LLM explanation (Neuronpedia)"
    assert SPEC in e.source
    where = tmp_path / "cache" / "neuronpedia" / MODEL / SAE / "explanations"
    assert sorted(p.name for p in where.iterdir()) == ["batch-0.jsonl.gz", "batch-1.jsonl.gz", "batch-2.jsonl.gz",
                                                        "listing.json"]
    assert sum("list-type=2" in r for r in bucket.requests) == 2  # three keys, pages of two
    assert sum(r.startswith("/v1/") for r in bucket.requests) == 3  # not the other folders
    n = len(bucket.requests)
    assert load_explanations(SPEC, d_sae=16).texts == e.texts
    assert len(bucket.requests) == n


def test_one_explainers_folder_can_be_named(bucket):
    e = load_explanations(f"{SPEC}/explanations-claude", d_sae=16, explainer="claude")
    assert e.texts == {i: f"latent {i} text" for i in range(3)}


@pytest.mark.parametrize("var", ["SAELAB_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_reads_the_cache_and_says_so_when_it_is_empty(bucket, monkeypatch, var):
    monkeypatch.setenv(var, "1")
    with pytest.raises(ConfigError, match=f"{SPEC} is not in the cache .*downloads are off") as err:
        load_explanations(SPEC, d_sae=16)
    assert "\n" not in str(err.value) and not bucket.requests
    monkeypatch.delenv(var)
    load_explanations(SPEC, d_sae=16)
    n = len(bucket.requests)
    monkeypatch.setenv(var, "1")
    assert len(load_explanations(SPEC, d_sae=16).texts) == 10 and len(bucket.requests) == n


def test_an_unknown_sae_names_the_ids_and_what_would_work(bucket):
    with pytest.raises(ConfigError,
                       match=f"no explanation export for neuronpedia:{MODEL}/nope.*neuronpedia.org") as err:
        fetch_export(f"neuronpedia:{MODEL}/nope")
    assert "\n" not in str(err.value)


def test_a_404_names_the_ids(bucket, monkeypatch):
    monkeypatch.setenv("SAELAB_NEURONPEDIA_URL", os.environ["SAELAB_NEURONPEDIA_URL"] + "/no-such-bucket")
    with pytest.raises(ConfigError, match=rf"{SPEC} has no explanation export at .*HTTP 404.*neuronpedia\.org"):
        fetch_export(SPEC)


def test_a_download_cut_short_is_never_read(bucket, tmp_path):
    key = PREFIX + "batch-1.jsonl.gz"
    bucket.cut_short.add(key)
    with pytest.raises(ConfigError, match="run again"):
        load_explanations(SPEC, d_sae=16)
    parent = export_dir(parse_id(SPEC)).parent
    assert not export_dir(parse_id(SPEC)).exists() and list(parent.iterdir()) == []  # no partial left either
    bucket.cut_short.clear()
    assert len(load_explanations(SPEC, d_sae=16).texts) == 10


def test_a_truncated_file_at_the_source_is_not_cached(bucket):
    key = PREFIX + "batch-2.jsonl.gz"
    whole = bucket.files[key]
    bucket.files[key] = whole[:-12]  # the listing agrees with the size: only the gzip end shows it
    with pytest.raises(ConfigError, match="not a whole gzip file"):
        fetch_export(SPEC)
    assert not export_dir(parse_id(SPEC)).exists()
    bucket.files[key] = whole
    assert (fetch_export(SPEC) / "batch-2.jsonl.gz").read_bytes() == whole


@pytest.mark.parametrize("bad", ["neuronpedia:gemma-2-2b", "neuronpedia:a/b/c/d", "neuronpedia:../x",
                                 "neuronpedia:a/b/features"])
def test_malformed_ids_are_refused(bad):
    with pytest.raises(ConfigError, match="expected neuronpedia:MODEL_ID/SAE_ID"):
        parse_id(bad)


def test_cli_embed_takes_a_neuronpedia_id(bucket, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(importlib.import_module("saelab.sfal.run"), "Embedder", FakeEmbedder)
    ws, d = _grouped_workspace(tmp_path / "ws")
    assert run_cli("embed", "-w", str(ws.root), "-d", "synth", "-e", SPEC, "--embeddings", "fake") == 0
    assert "10 LLM explanation (Neuronpedia)s embedded" in capsys.readouterr().out
    monkeypatch.setenv("SAELAB_OFFLINE", "1")
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path / "empty-cache"))
    assert run_cli("embed", "-w", str(ws.root), "-d", "synth", "-e", SPEC, "--embeddings", "fake") == 2
    err = capsys.readouterr().err
    assert "not in the cache" in err and len(err.strip().splitlines()) == 1
