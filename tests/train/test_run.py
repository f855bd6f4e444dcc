"""`train.run` on a tiny random Llama, and `saelab train` end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from saelab.coders import SparseCoder
from saelab.data.tokens import TokenizeConfig, TokenWindows, hash_tokens
from saelab.errors import ConfigError
from saelab.train import DictionarySpec, TrainConfig, run
from saelab.workspace import Workspace

from ..conftest import corpus_file, save_model


def _windows(vocab: int, n_windows: int = 48, ctx: int = 16) -> TokenWindows:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, vocab, (n_windows, ctx), generator=g, dtype=torch.int32)
    tokens[torch.rand(tokens.shape, generator=g) < 0.1] = 2  # EOS separators: special, excluded
    cfg = {"tokens_hash": hash_tokens(tokens)}
    return TokenWindows(tokens, torch.zeros_like(tokens), [], [0, 1, 2], None,
                        TokenizeConfig(ctx_len=ctx, n_tokens=n_windows * ctx), cfg)


def _config(**kw) -> TrainConfig:
    specs = (DictionarySpec("sae", "resid_post.1", d_sae=64, k=4),
             DictionarySpec("tc", "resid_post.1", d_sae=64, k=4, architecture="batchtopk", out_hookpoint="mlp_out.2",
                            skip=True))
    return TrainConfig(specs, **{"n_tokens": 40 * 16, "batch_size": 4, "shuffle_windows": 8, "checkpoint_every": 3,
                                 "dead_tokens": 200, **kw})


def test_run_saves_dictionaries_with_their_training_record(tiny_llama, tmp_path):
    windows = _windows(tiny_llama.config.vocab_size)
    paths = run(_config(), Workspace(tmp_path), tiny_llama, windows, progress=False)
    assert [p.name for p in paths] == ["sae", "tc"]
    sae, tc = (SparseCoder.load(p) for p in paths)
    assert sae.cfg.hookpoint == "model.layers.1" and sae.cfg.kind == "sae" and sae.cfg.k == 4
    assert tc.cfg.kind == "transcoder" and tc.cfg.out_hookpoint == "model.layers.2.mlp" and tc.W_skip is not None
    assert float(tc.threshold) > 0  # BatchTopK's inference threshold was learned
    rec = sae.cfg.extra["training"]
    assert rec["tokens_hash"] == windows.tokens_hash and rec["windows"] == [0, 40]
    assert rec["excluded_positions"] == ["sink", "special"]
    assert rec["tokens_seen"] == 40 * 16
    mask = windows.text_mask()[:40]
    assert rec["text_tokens_seen"] == int(mask.sum()) < 40 * 16
    assert rec["final"]["steps"] == 10 and 0 < rec["final"]["fvu"] < 2
    log = [json.loads(ln) for ln in (paths[0] / "train_log.jsonl").read_text().splitlines()]
    assert {r["dictionary"] for r in log} == {"sae"} and log[-1]["step"] == 10
    assert {"fvu", "l0", "dead_fraction", "aux_loss", "lr", "tokens", "tokens_per_s"} <= set(log[-1])


def test_run_resumes_to_the_same_dictionaries(tiny_llama, tmp_path):
    windows = _windows(tiny_llama.config.vocab_size)
    full = run(_config(), Workspace(tmp_path / "a"), tiny_llama, windows, progress=False)
    assert run(_config(), Workspace(tmp_path / "b"), tiny_llama, windows, progress=False, until_step=5) == []
    resumed = run(_config(), Workspace(tmp_path / "b"), tiny_llama, windows, progress=False, resume=True)
    for a, b in zip(full, resumed):
        sa, sb = SparseCoder.load(a).state_dict(), SparseCoder.load(b).state_dict()
        assert all(torch.equal(sa[key], sb[key]) for key in sa)


def test_run_refuses_a_budget_beyond_the_windows(tiny_llama, tmp_path):
    with pytest.raises(ConfigError, match="n_tokens: got 1,000,000"):
        run(_config(n_tokens=1_000_000), Workspace(tmp_path), tiny_llama, _windows(tiny_llama.config.vocab_size),
            progress=False)


def test_cli_trains_two_widths_from_one_stream(tiny_llama, tmp_path):
    model_dir, corpus, ws = save_model(tiny_llama, tmp_path / "model"), corpus_file(tmp_path), tmp_path / "ws"
    cmd = [sys.executable, "-c", "from saelab.cli import main; main()", "train", "-m", model_dir, "-w", str(ws),
           "--corpus", str(corpus), "--ctx-len", "32", "--n-tokens", "2048", "-H", "resid_post.2", "--d-sae", "64",
           "--d-sae", "128", "--k", "4", "--batch-size", "4", "--name", "tiny", "--dtype", "float32"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", **_env()})
    assert r.returncode == 0, r.stderr
    for width in (64, 128):
        cfg = json.loads((ws / "dictionaries" / f"tiny-{width}" / "cfg.json").read_text())
        assert cfg["d_sae"] == width and cfg["extra"]["training"]["tokens_seen"] == 2048
    assert (ws / "train" / "tiny" / "checkpoint.pt").exists()
    bad = subprocess.run(cmd[:-2] + ["--skip"], capture_output=True, text=True, timeout=300, env=_env())
    assert bad.returncode == 2 and "skip:" in bad.stderr and "Traceback" not in bad.stderr


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1"}
