"""The openai client against a real OpenAI-compatible server: llama-cpp-python's, serving the
embedded SmolLM2-135M GGUF on 127.0.0.1 with an API key. `make test-server` builds and
installs it (once) and runs these tests; they are excluded from the default suite."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import pytest

from saelab.interp import ExampleConfig, InterpConfig, run
from saelab.interp.clients import OpenAIClient
from saelab.interp.clients.base import yes_share

from ..conftest import run_cli
from .conftest import planted_for_cli, planted_workspace

pytestmark = pytest.mark.llamacpp

KEY_ENV = "SAELAB_LLAMACPP_KEY"
KEY = f"sk-local-{secrets.token_hex(12)}"
MODEL = "smollm2"
JUDGE = [{"role": "system", "content": "Answer with one word: Yes or No."},
         {"role": "user", "content": "Explanation: words about music\nText: the band played a song on the guitar\n"
                                     "Is the feature present? Answer Yes or No."}]


@dataclass
class Server:
    url: str
    """base URL, ending in /v1"""
    log: Path
    """the server's stdout + stderr"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(server: Server, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Poll GET /models until the model is loaded (or the process died)."""
    req = urllib.request.Request(f"{server.url}/models", headers={"Authorization": f"Bearer {KEY}"})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{server.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    pytest.fail(f"llama_cpp.server not ready after {timeout_s:g} s:\n{server.log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """llama-cpp-python's server on a free port, the key in its environment (API_KEY), not its argv.

    One thread: on 2 shared cores, llama.cpp's spinning worker threads make 2 threads ~10x slower."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail("llama-cpp-python[server] is not installed in this environment: run `make test-server`.")
    from saelab.models.embedded import EMBEDDED_MODELS

    gguf = EMBEDDED_MODELS["smollm2-135m"].locate_gguf()
    port = _free_port()
    server = Server(f"http://127.0.0.1:{port}/v1", tmp_path_factory.mktemp("llamacpp") / "server.log")
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL,
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1",
           "--n_threads_batch", "1", "--verbose", "false"]
    with server.log.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "API_KEY": KEY})
    try:
        _wait_ready(server, proc)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def key_in_env(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def _client(url: str, **kw) -> OpenAIClient:
    return OpenAIClient(url, MODEL, **{"api_key_env": KEY_ENV, "timeout_s": 60, "backoff_s": 0.05, **kw})


class Proxy:
    """A 127.0.0.1 pass-through to the real server that counts requests in flight; requests chosen by
    `slow(n, body)` (n = arrival number) get no answer for `delay_s` and then a closed connection."""

    def __init__(self, upstream: str, slow: Callable[[int, dict], bool] = lambda n, b: False,
                 delay_s: float = 0.0) -> None:
        self.upstream, self.slow, self.delay_s = upstream, slow, delay_s
        self.n = self.in_flight = self.max_in_flight = self.delayed = 0
        self.bodies: list[dict] = []
        self.answers: dict[str, dict] = {}
        """the server's answer to each forwarded request, by its messages (JSON)"""
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.loads(raw)
                with proxy.lock:
                    proxy.n += 1
                    proxy.bodies.append(body)
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                    slow = proxy.slow(proxy.n, body)
                    proxy.delayed += slow
                if slow:
                    time.sleep(proxy.delay_s)
                else:
                    status, payload = proxy.ask(self.path, raw, self.headers)
                with proxy.lock:  # before answering: the client's next request may come right after
                    proxy.in_flight -= 1
                if slow:
                    self.close_connection = True
                    return
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def ask(self, path: str, raw: bytes, headers) -> tuple[int, bytes]:
        """(status, body) of the real server's answer to the same request."""
        keep = {k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type")}
        req = urllib.request.Request(self.upstream + path.removeprefix("/v1"), data=raw, headers=keep, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                status, payload = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, payload = e.code, e.read()
        if status == 200:
            with self.lock:
                self.answers[json.dumps(json.loads(raw)["messages"])] = json.loads(payload)
        return status, payload

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def proxy(llama_server):
    made: list[Proxy] = []

    def make(**kw) -> Proxy:
        made.append(Proxy(llama_server.url, **kw))
        return made[-1]

    yield make
    for p in made:
        p.close()


def test_chat_round_trip_is_deterministic_at_temperature_0(llama_server):
    client = _client(llama_server.url, max_retries=0)
    prompt = [{"role": "user", "content": "Name a colour."}]
    first, second = client.generate([prompt, prompt], max_tokens=12)
    assert not first.failed and first.text.strip() and first.prob_yes is None
    assert second.text == first.text
    assert client.stats == {"requests": 2, "retries": 0, "failed": 0}


def test_the_servers_key_check_is_passed_and_a_wrong_key_is_refused_once(llama_server, monkeypatch):
    monkeypatch.setenv("SAELAB_WRONG_KEY", "sk-wrong")
    wrong = _client(llama_server.url, api_key_env="SAELAB_WRONG_KEY", max_retries=3)
    [a] = wrong.generate([JUDGE], max_tokens=2)
    assert a.failed and a.reason.startswith("HTTP 401") and "sk-wrong" not in a.reason
    assert wrong.stats == {"requests": 1, "retries": 0, "failed": 1}  # a client error is not retried
    [b] = _client(llama_server.url).generate([JUDGE], max_tokens=2)
    assert not b.failed


def test_judge_reads_p_yes_from_the_servers_top_logprobs(llama_server):
    """The client's P(yes) is P(yes) / (P(yes) + P(no)) over the first token's top_logprobs, as served."""
    [a] = _client(llama_server.url).judge([JUDGE])
    body = {"model": MODEL, "messages": JUDGE, "max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": 10}
    req = urllib.request.Request(f"{llama_server.url}/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        top = json.loads(r.read())["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    by_hand = yes_share({t["token"]: t["logprob"] for t in top})
    assert by_hand is not None and 0 < by_hand < 1  # SmolLM2 puts both Yes and No in its top 10
    assert not a.failed and a.prob_yes == pytest.approx(by_hand, abs=1e-3)
    assert a.text.strip() in ("Yes", "No")  # one token generated: the answer word itself


def test_concurrency_limit_holds_and_answers_keep_their_order(llama_server, proxy):
    prompts = [[JUDGE[0], {"role": "user", "content": JUDGE[1]["content"].replace("guitar", w)}]
               for w in ("guitar", "piano", "river", "drum", "tax", "violin")]
    p = proxy()
    answers = _client(p.url, concurrency=2).judge(prompts)
    assert p.n == 6 and p.max_in_flight == 2  # the server answers one at a time, so two wait in flight
    for prompt, a in zip(prompts, answers):  # each answer is the one the server gave to that prompt
        top = p.answers[json.dumps(prompt)]["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        assert a.prob_yes == yes_share({t["token"]: t["logprob"] for t in top})


def test_a_timeout_is_retried_then_a_counted_failure(llama_server):
    client = _client(llama_server.url, timeout_s=0.01, max_retries=1)
    [a] = client.generate([[{"role": "user", "content": "Write a long story about a king."}]], max_tokens=32)
    assert a.failed and a.reason == "timeout after 0.01 s after 2 attempts"
    assert client.stats == {"requests": 2, "retries": 1, "failed": 1}


def test_autointerp_command_explains_and_scores_through_the_server_without_leaking_the_key(
        llama_server, tmp_path, capsys, caplog):
    ws = planted_for_cli(tmp_path)
    args = ["autointerp", str(tmp_path / "tok"), "synth", "-w", str(ws.root), "--explainer_provider", "openai",
            "--base_url", llama_server.url, "--explainer_model", MODEL, "--api_key_env", KEY_ENV,
            "--scorers", "detection", "--max_latents", "2", "--min_examples", "5", "--example_ctx_len", "8",
            "--n_examples_train", "5", "--n_examples_test", "4", "--n_non_activating", "4"]
    with caplog.at_level("DEBUG"):
        assert run_cli(*args) == 0
    out = ws.root / "interp" / "synth"
    explanations = [json.loads(p.read_text()) for p in sorted((out / "explanations" / "default").glob("*.json"))]
    assert len(explanations) == 2
    # SmolLM2-135M often misses the answer format: then the failure is recorded with its reason
    assert all(e["explanation"] if not e["failed"] else e["reason"] for e in explanations)
    s = json.loads((out / "summary.json").read_text())
    pooled = s["scores"]["detection"]["top-tokens"]["pooled"]
    assert pooled["n_examples"] == 2 * 8 and pooled["n_failed"] == 0 and pooled["auc"] is not None
    records = [r for p in (out / "scores" / "detection" / "top-tokens").glob("*.json")
               for r in json.loads(p.read_text())["records"]]
    assert len(records) == 16 and all(0 < r["probability"] < 1 for r in records)  # read from log-probs
    client = json.loads((out / "run_config.json").read_text())["client"]
    assert client["base_url"] == llama_server.url and client["api_key_set"] is True
    captured = capsys.readouterr()
    assert KEY not in caplog.text + captured.out + captured.err
    for f in out.rglob("*"):
        if f.is_file():
            assert KEY not in f.read_text(errors="replace"), f


def test_timeouts_are_counted_and_a_rerun_asks_only_for_the_failed_records(llama_server, proxy, tmp_path):
    ws, tok = planted_workspace(tmp_path / "ws")
    ex = ExampleConfig(example_ctx_len=8, n_examples_train=5, n_examples_test=4, n_non_activating=4, min_examples=5)
    # one request at a time: the server answers in turn, so requests queued behind others would time out too
    cfg = InterpConfig(examples=ex, explainer="top-tokens", scorers=("detection",), max_latents=2,
                       explainer_provider="openai", explainer_model=MODEL, api_key_env=KEY_ENV, timeout_s=5.0,
                       max_retries=0, batch_size=1)
    slowed = proxy(slow=lambda n, body: n % 16 == 0, delay_s=6.0)  # every 16th request: no answer within 5 s
    out = run(InterpConfig(**{**cfg.__dict__, "base_url": slowed.url}), ws, "synth", name="t", tokenizer=tok)
    s = json.loads((out / "summary.json").read_text())["scores"]["detection"]
    n_failed = sum(t["pooled"]["n_failed"] for t in s.values())
    assert slowed.n == 2 * 2 * 8 and n_failed == slowed.delayed == 2  # top-tokens + shuffled, 2 latents, 8 each
    reasons = sum((Counter(t["failure_reasons"]) for t in s.values()), Counter())
    assert reasons == {"timeout after 5 s after 1 attempts": 2}
    healthy = proxy()
    run(InterpConfig(**{**cfg.__dict__, "base_url": healthy.url}), ws, "synth", name="t", tokenizer=tok)
    assert healthy.n == n_failed  # only the failed records were asked again
    s = json.loads((out / "summary.json").read_text())["scores"]["detection"]
    assert sum(t["pooled"]["n_failed"] for t in s.values()) == 0
