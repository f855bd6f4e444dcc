"""Resume, atomicity, refusal of other windows, and sharding by rank under torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saelab.errors import ArtifactError
from saelab.latents import CacheConfig, LatentStore, run
from saelab.latents.run import _block
from saelab.workspace import Workspace

from .fixtures import tiny_coders, tiny_lm, tiny_windows
from .worker import CONFIG

WORKER = Path(__file__).with_name("worker.py")
N_SHARDS = 10  # 40 windows / shard_windows 4 (worker.CONFIG)


def _worker(ws: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), str(ws), *args], stderr=subprocess.PIPE)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted single-process run, in this process (one thread, like the worker)."""
    ws = tmp_path_factory.mktemp("reference")
    run(CONFIG, Workspace(ws), tiny_lm(), tiny_windows(), tiny_coders(), progress=False)
    return ws


def _listed(store: Path) -> int:
    """Shards listed in the manifest (written atomically, so never read half-written)."""
    path = store / "manifest.json"
    return len(json.loads(path.read_text())["shards"]) if path.exists() else 0


def test_sigkill_then_resume_is_byte_identical(reference, tmp_path):
    proc = _worker(tmp_path, "0.15")  # slow batches: ~0.6 s per shard
    store = tmp_path / "latents" / "sae_l1"
    deadline = time.monotonic() + 60
    while _listed(store) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = _listed(store)
    assert 2 <= n_done < N_SHARDS, f"kill landed at {n_done} finished shards"
    with pytest.raises(ArtifactError, match="incomplete"):
        LatentStore(store)
    first = store / "shards" / "shard-00000.safetensors"
    stamp = first.stat().st_mtime_ns

    (tmp_path / "written.rank-0").unlink()
    proc = _worker(tmp_path)
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    assert first.stat().st_mtime_ns == stamp  # finished shards are not recomputed
    rewritten = (tmp_path / "written.rank-0").read_text().split("\n")
    assert "sae_l1 0" not in rewritten and f"sae_l1 {N_SHARDS - 1}" in rewritten
    assert _files(tmp_path / "latents") == _files(reference / "latents")


def _crash_after(coders: dict, n_calls: int) -> None:
    """Make the dictionaries raise after `n_calls` encodes in all (a crash mid-run)."""
    calls = [0]
    for coder in coders.values():
        def encode(x, _e=coder.encode):
            calls[0] += 1
            if calls[0] > n_calls:
                raise KeyboardInterrupt("simulated crash")
            return _e(x)
        coder.encode = encode


def test_half_written_shard_is_never_read(tmp_path):
    config = CacheConfig(batch_size=2, shard_windows=4, value_dtype="bfloat16")
    lm, windows = tiny_lm(), tiny_windows()
    clean = Workspace(tmp_path / "clean")
    run(config, clean, lm, windows, tiny_coders(), progress=False)

    ws = Workspace(tmp_path / "crashed")
    coders = tiny_coders()
    _crash_after(coders, 2 * 2 * 3 + 1)  # 3 shards of 2 batches for 2 dictionaries, then one more batch
    with pytest.raises(KeyboardInterrupt):
        run(config, ws, lm, windows, coders, progress=False)
    store = ws.latents("sae_l1")
    # what a kill during a write leaves: a temporary, and a torn shard that was never listed
    (store / "shards" / ".shard-00003.safetensors.x1y2.tmp").write_bytes(b"\x00" * 100)
    (store / "shards" / "shard-00003.safetensors").write_bytes(b"torn")
    with pytest.raises(ArtifactError, match="incomplete"):
        LatentStore(store)

    run(config, ws, lm, windows, tiny_coders(), progress=False)
    assert not list(store.rglob("*.tmp"))
    assert _files(ws.root / "latents") == _files(clean.root / "latents")


def test_listed_shard_of_wrong_size_is_refused(tmp_path):
    ws = Workspace(tmp_path)
    paths = run(CacheConfig(batch_size=2, shard_windows=4), ws, tiny_lm(), tiny_windows(), tiny_coders(),
                progress=False)
    with open(paths["sae_l1"] / "shards" / "shard-00001.safetensors", "ab") as f:
        f.write(b"junk")
    store = LatentStore(paths["sae_l1"])
    with pytest.raises(ArtifactError, match="shard-00001"):
        store.window_maxima(0)


def test_other_windows_or_dictionary_are_refused(tmp_path):
    ws, lm, config = Workspace(tmp_path), tiny_lm(), CacheConfig(batch_size=2, shard_windows=4)
    run(config, ws, lm, tiny_windows(), tiny_coders(), progress=False)
    with pytest.raises(ArtifactError, match="token windows"):
        run(config, ws, lm, tiny_windows(seed=1), tiny_coders(), progress=False)
    with pytest.raises(ArtifactError, match="dictionary_hash"):
        run(config, ws, lm, tiny_windows(), tiny_coders(seed=1), progress=False)
    with pytest.raises(ArtifactError, match="shard_windows"):
        run(CacheConfig(batch_size=2, shard_windows=8), ws, lm, tiny_windows(), tiny_coders(), progress=False)
    paths = run(config, ws, lm, tiny_windows(seed=1), tiny_coders(), overwrite=True, progress=False)
    assert LatentStore(paths["sae_l1"]).tokens_hash == tiny_windows(seed=1).tokens_hash


def test_rank_blocks_are_disjoint_and_cover():
    for n_shards, world in ((10, 2), (7, 3), (2, 4)):
        blocks = [list(_block(n_shards, r, world)) for r in range(world)]
        assert sorted(i for b in blocks for i in b) == list(range(n_shards))


def test_torchrun_two_ranks_equal_single_process(reference, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(WORKER), str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, timeout=180)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    written = [set((tmp_path / f"written.rank-{r}").read_text().split("\n")) - {""} for r in (0, 1)]
    assert written[0] and written[1] and not written[0] & written[1]
    assert len(written[0] | written[1]) == 2 * N_SHARDS
    assert not list((tmp_path / "latents").rglob("manifest.rank-*"))
    assert _files(tmp_path / "latents") == _files(reference / "latents")


def test_dictionary_of_another_width_is_refused(tmp_path):
    from saelab.coders import CoderConfig, SparseCoder
    from saelab.errors import ConfigError

    wrong = SparseCoder(CoderConfig("topk", d_in=16, d_sae=8, k=2, hookpoint="model.layers.1"))
    with pytest.raises(ConfigError, match="d_in is 16"):
        run(CacheConfig(batch_size=2, shard_windows=4), Workspace(tmp_path), tiny_lm(), tiny_windows(),
            {"wrong": wrong}, progress=False)


def test_a_second_cache_of_the_same_store_is_refused_and_the_first_finishes(reference, tmp_path):
    first = _worker(tmp_path, "0.15")  # slow batches: it holds the stores' locks for ~6 s
    lock = tmp_path / ".locks" / "latents" / "sae_l1.lock"
    deadline = time.monotonic() + 60
    while not lock.exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    second = _worker(tmp_path)
    assert second.wait(timeout=120) != 0
    err = second.stderr.read().decode()
    assert "being written by another saelab process" in err and f"PID {first.pid}" in err
    assert first.wait(timeout=120) == 0, first.stderr.read().decode()
    assert _files(tmp_path / "latents") == _files(reference / "latents")  # nothing lost, nothing mixed
    assert not list((tmp_path / ".locks").rglob("*.lock"))


def test_cache_from_a_training_buffer_equals_the_cache_from_the_model(reference, tmp_path):
    """The demo caches the windows its SAEs trained on from their activation buffer, not a second forward."""
    from saelab.activations.buffer import write_buffer
    from saelab.errors import ArtifactError
    from saelab.train.source import model_reader

    lm, windows = tiny_lm(), tiny_windows()
    read = model_reader(lm, windows, ["model.layers.1", "model.layers.2"], 2)
    identity = {"tokens_hash": windows.tokens_hash, "model": lm.spec}
    buffer = write_buffer(tmp_path / "buffer", read, 0, windows.n_windows, identity, ctx_len=windows.ctx_len,
                          chunk_windows=8, progress=False)
    run(CONFIG, Workspace(tmp_path / "ws"), lm, windows, tiny_coders(), progress=False, buffer=buffer)
    for name in tiny_coders():
        a, b = _files(reference / "latents" / name), _files(tmp_path / "ws" / "latents" / name)
        assert a.keys() == b.keys()
        assert all(a[f] == b[f] for f in a if f.endswith(".safetensors")), name
    with pytest.raises(ArtifactError, match="Cache without it"):
        run(CONFIG, Workspace(tmp_path / "ws2"), lm, tiny_windows(seed=1), tiny_coders(), progress=False,
            buffer=buffer)
