"""The seed's flows end to end, with dictionaries on the Hub: every command takes `org/repo` specs through
huggingface_hub's real download path, against a local server that speaks the Hub's file API
(tests/hubserver.py). Models are tiny random Llama 3 / Gemma 2 models saved to disk; the dictionaries are
the peer-written fixtures laid out as the published repos are.

- delphi-style: `autointerp MODEL REPO --hookpoints layers.1 layers.2` (one store and run per hookpoint,
  one summary over all), then cooc, sfal, match, dict info and the report on those stores;
- Gemma Scope chosen by layer, width and nearest L0 (`eval`);
- a transcoder against a Gemma Scope transcoder (`compare ... --layer 1`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import english, run_cli, save_model
from tests.hubserver import HubServer

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SPARSIFY = "EleutherAI/sae-tiny-llama3-4x"
GEMMA_RES = "google/gemma-scope-2b-pt-res"
GEMMA_TC = "google/gemma-scope-2b-pt-transcoders"


def cli(capsys, *args: str) -> str:
    code = run_cli(*args)
    out = capsys.readouterr()
    assert code == 0, f"saelab {' '.join(map(str, args))} exited {code}: {out.err[-2000:]}"
    return out.out


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_llama3, tiny_gemma2):
    root = tmp_path_factory.mktemp("flows")
    for lm, name in ((tiny_llama3, "llama3"), (tiny_gemma2, "gemma2")):
        save_model(lm, root / name)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in english(400, seed=3)))
    repos = root / "repos"
    for hp in ("layers.1", "layers.2"):  # a sparsify repo: one folder per hookpoint (64-wide, as the models)
        shutil.copytree(FIXTURES / "sparsify/run/layers.3", repos / SPARSIFY / hp)
    npz = FIXTURES / "gemmascope/layer_3/width_256/average_l0_20/params.npz"
    for rel in ("layer_1/width_16k/average_l0_20", "layer_1/width_16k/average_l0_105",
                "layer_1/width_65k/average_l0_90"):
        (repos / GEMMA_RES / rel).mkdir(parents=True)
        shutil.copy(npz, repos / GEMMA_RES / rel / "params.npz")
    tc = FIXTURES / "gemmascope_transcoders/gemma-scope-2b-pt-transcoders/layer_3/width_256/average_l0_20/params.npz"
    for rel in ("layer_1/width_16k/average_l0_8", "layer_1/width_16k/average_l0_60", "layer_2/width_16k/average_l0_8"):
        (repos / GEMMA_TC / rel).mkdir(parents=True)
        shutil.copy(tc, repos / GEMMA_TC / rel / "params.npz")
    with HubServer(repos) as server:
        mp = pytest.MonkeyPatch()
        mp.setenv("HF_ENDPOINT", server.url)
        mp.setenv("HF_HUB_CACHE", str(root / "hf-cache"))
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        yield root, server
        mp.undo()


def test_delphi_style_multi_hookpoint_autointerp_then_every_analysis(env, capsys):
    root, hub = env
    ws = root / "ws-llama"
    out = cli(capsys, "autointerp", root / "llama3", SPARSIFY, "--hookpoints", "layers.1", "layers.2", "-w", ws,
              "--dataset_repo", root / "corpus.jsonl", "--n_tokens", 8192, "--cache_ctx_len", 32, "--dtype", "float32",
              "--explainer", "top-tokens", "--scorers", "embedding", "--min_examples", 3, "--example_ctx_len", 8,
              "--n_examples_train", 5, "--n_examples_test", 5, "--n_non_activating", 5, "--max_latents", 3)
    stores = {hp: f"sae-tiny-llama3-4x__{hp}" for hp in ("layers.1", "layers.2")}
    for hp, store in stores.items():
        cfg = json.loads((ws / "latents" / store / "cfg.json").read_text())
        assert cfg["complete"] and cfg["hookpoint"] == f"model.layers.{hp[-1]}"
        assert (cfg["dictionary_source"]["repo"] == SPARSIFY
                and cfg["dictionary_source"]["revision"] == hub.sha(SPARSIFY))
        assert (ws / "interp" / store / "summary.md").exists()
    summary = (ws / "interp" / "sae-tiny-llama3-4x" / "summary.md").read_text()
    assert "2 hookpoints" in summary and "## layers.1" in summary and "## layers.2" in summary
    assert "| embedding | top-tokens | 3 |" in summary and "| embedding | top-tokens | 3 |" in out
    resolved = {p.split("/")[-2] for m, p in hub.requests if "/resolve/" in p}  # HEAD, then GET unless deduplicated
    assert resolved == {"layers.1", "layers.2"}

    cli(capsys, "cooc", "-d", SPARSIFY, "--hookpoint", "layers.1", "--k", 16, "-w", ws)
    assert (ws / "cooc" / stores["layers.1"] / "cfg.json").exists()
    cli(capsys, "sfal", "-d", SPARSIFY, "--hookpoint", "layers.1", "-e", "top-tokens", "--top-n", 20, "-w", ws)
    assert (ws / "sfal" / stores["layers.1"]).is_dir()
    cli(capsys, "match", "--a", f"{SPARSIFY}/layers.1", "--b", f"{SPARSIFY}/layers.2", "-w", ws)
    assert (ws / "match" / f"{stores['layers.1']}__{stores['layers.2']}" / "matches.parquet").exists()
    n = len(hub.requests)
    info = json.loads(cli(capsys, "dict", "info", f"hf://{SPARSIFY}", "--hookpoint", "layers.2", "-o", "json"))
    assert info["source"]["path"] == "layers.2" and info["source_format"] == "sparsify"
    cli(capsys, "report", ws)
    page = (ws / "report" / stores["layers.1"] / "index.html").read_text()
    assert f"{SPARSIFY}/layers.1" in page and hub.sha(SPARSIFY) in page
    assert len(hub.requests) == n  # everything after the first resolution came from the cache


def test_gemma_scope_by_width_and_nearest_l0(env, capsys):
    root, hub = env
    ws = root / "ws-gemma"
    cli(capsys, "tokens", "--model", root / "gemma2", "--corpus", root / "corpus.jsonl", "--n-tokens", 8192,
        "--ctx-len", 32, "-w", ws)
    cli(capsys, "eval", "-d", GEMMA_RES, "--layer", 1, "--sae_features", "16k", "--target_l0", 100, "--sae_type", "res",
        "--model", root / "gemma2", "--dtype", "float32", "--n-tokens", 2048, "--ce-n-tokens", 512,
        "--metrics", "reconstruction,sparsity,downstream", "-w", ws)
    name = "gemma-scope-2b-pt-res__layer_1__width_16k__average_l0_105"
    cfg = json.loads((ws / "evals" / name / "cfg.json").read_text())
    assert cfg["dictionary_source"]["path"] == "layer_1/width_16k/average_l0_105"
    assert cfg["dictionary_source"]["revision"] == hub.sha(GEMMA_RES)
    metrics = json.loads((ws / "evals" / name / "metrics.json").read_text())
    assert (metrics["dictionary"]["hookpoint"] == "resid_post.1"
            and metrics["dictionary"]["source_format"] == "gemmascope")
    assert metrics["reconstruction"]["fvu"] > 0 and metrics["downstream"]["n_positions"] > 0


def test_transcoder_against_a_gemma_scope_transcoder(env, capsys):
    import torch

    from saelab.coders import CoderConfig, SparseCoder

    root, hub = env
    ws = root / "ws-gemma"
    torch.manual_seed(0)
    mine = SparseCoder(CoderConfig("topk", d_in=64, d_sae=128, k=8, kind="transcoder",
                                   hookpoint="model.layers.1.pre_feedforward_layernorm",
                                   out_hookpoint="model.layers.1.post_feedforward_layernorm",
                                   apply_b_dec_to_input=False))
    mine.save(root / "my_transcoder")
    out_dir = root / "tc-vs-gemmascope"
    cli(capsys, "compare", "--a", root / "my_transcoder", "--b", GEMMA_TC, "--layer", 1, "--width", "16k", "--l0", 10,
        "--model", root / "gemma2", "--dtype", "float32", "--n-tokens", 2048, "--ce-n-tokens", 512, "-w", ws,
        "-o", out_dir)
    cfg = json.loads((out_dir / "cfg.json").read_text())
    assert cfg["dictionary_sources"][1]["path"] == "layer_1/width_16k/average_l0_8"
    assert cfg["names"] == ["my_transcoder", "gemma-scope-2b-pt-transcoders__layer_1__width_16k__average_l0_8"]
    b = json.loads((out_dir / f"{cfg['names'][1]}_metrics.json").read_text())
    assert b["dictionary"]["kind"] == "transcoder"
    assert b["dictionary"]["out_hookpoint"] == "model.layers.1.post_feedforward_layernorm"
    assert b["downstream"]["n_positions"] > 0 and b["reconstruction"]["fvu"] > 0
