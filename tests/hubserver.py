"""A small HTTP server on 127.0.0.1 that speaks the Hugging Face Hub's file API, for offline tests.

It serves a directory laid out as `ROOT/<org>/<name>/<files>` as model repos at one commit
(branch `main`): `GET /api/models/<org>/<name>[/revision/<rev>]` (the repo's sha and file list,
what `HfApi.model_info` reads) and `HEAD` / `GET /<org>/<name>/resolve/<rev>/<path>` (what
`hf_hub_download` reads: `X-Repo-Commit`, `ETag`, `Content-Length`, ranges for resumes).
Errors carry the Hub's `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound,
GatedRepo), so huggingface_hub raises its own exception classes. A repo holding a file
`.gated` answers only requests with `Authorization: Bearer <that file's text>`. Every request
is recorded in `requests`; `cuts` maps files to how many of their next GETs stop half-way.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class HubServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.requests: list[tuple[str, str]] = []
        self.cuts: dict[str, int] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def files(self, repo: str) -> list[str]:
        base = self.root / repo
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file() and p.name != ".gated")

    def sha(self, repo: str) -> str:
        h = hashlib.sha1()
        for f in self.files(repo):
            h.update(f.encode() + hashlib.sha1((self.root / repo / f).read_bytes()).digest())
        return h.hexdigest()

    def downloads(self) -> list[str]:
        """Paths of the files fetched with GET (not the API calls)."""
        return [p for m, p in self.requests if m == "GET" and "/resolve/" in p]


def _handler(server: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _send(self, code: int, body: bytes = b"", headers: dict | None = None, error: str | None = None) -> None:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if error:
                self.send_header("X-Error-Code", error)
                body = json.dumps({"error": error}).encode()
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _repo(self, org: str, name: str) -> str | None:
            repo = f"{org}/{name}"
            if not (server.root / repo).is_dir():
                self._send(404, error="RepoNotFound")
                return None
            gate = server.root / repo / ".gated"
            if gate.exists() and self.headers.get("Authorization") != f"Bearer {gate.read_text().strip()}":
                self._send(403 if self.headers.get("Authorization") else 401, error="GatedRepo")
                return None
            return repo

        def _revision_ok(self, repo: str, rev: str) -> bool:
            if rev in ("main", server.sha(repo)):
                return True
            self._send(404, error="RevisionNotFound")
            return False

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            server.requests.append((self.command, self.path))
            parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                repo = self._repo(parts[2], parts[3])
                if repo is None:
                    return
                rev = parts[5] if len(parts) >= 6 and parts[4] == "revision" else "main"
                if not self._revision_ok(repo, rev):
                    return
                body = {"id": repo, "modelId": repo, "sha": server.sha(repo), "private": False,
                        "siblings": [{"rfilename": f} for f in server.files(repo)]}
                self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
                return
            if len(parts) >= 5 and parts[2] == "resolve":
                repo = self._repo(parts[0], parts[1])
                if repo is None or not self._revision_ok(repo, parts[3]):
                    return
                self._file(repo, "/".join(parts[4:]))
                return
            self._send(404, error="RepoNotFound")

        def _file(self, repo: str, rel: str) -> None:
            path = server.root / repo / rel
            if not path.is_file():
                self._send(404, error="EntryNotFound")
                return
            data = path.read_bytes()
            headers = {"X-Repo-Commit": server.sha(repo), "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                       "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
            start = 0
            rng = self.headers.get("Range", "")
            if self.command == "GET" and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0] or 0)
            if self.command == "GET" and server.cuts.get(rel, 0) > 0:
                server.cuts[rel] -= 1
                self.send_response(200)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if start:
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                self._send(206, data[start:], headers)
            else:
                self._send(200, data, headers)

    return Handler
