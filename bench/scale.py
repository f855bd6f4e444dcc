"""A scale model of every stage at Gemma-2-2B and Llama-3.1-8B widths, with 16K/65K/131K-latent dictionaries.

Four parts, each writing its measurements into bench/scale.json (merged, so they can run apart):

- `match`: `saelab match` and `saelab report` as child processes on a synthetic workspace of a 131,072-latent
  and a 16,384-latent dictionary at d_model 2,304 (random unit decoders, 4,096 of B planted as near-twins of
  latents of A), with small latent stores (64 windows × 128 tokens, k = 32) so that activation correlation,
  top tokens and the report's pages run too. Peak RSS is the child's (`/usr/bin/time -v`).
- `stages`: the per-token cost of each stage's core on random-weight models built from the real configs
  (transformers' Gemma2Config / LlamaConfig with the 2B / 8B values set explicitly): the forward of the
  first 1–2 decoder layers (scaled linearly to the hookpoint depth), one `DictionaryTrainer`-equivalent
  TopK training step at the trainer's default batch and k, the cache's encode + top-k + shard writer, the
  eval's encode + decode, co-occurrence counting on a store. Measured on this CPU.
- `cooc`: the token-level co-occurrence rate alone, on the same synthetic 131,072-latent store.
- `table`: from those rates and the formulas in `estimate`, FLOPs, bytes on disk, peak memory and hours
  for 100M training tokens, 10M cached tokens and 1,000 explained latents, on this CPU (measured) and on one
  and eight 80 GB GPUs (estimates); writes /tmp/results_scale.md.

    flock /tmp/saelab-cpu.lock .venv/bin/python bench/scale.py match [--dir /tmp/saelab-scale-match]
    flock /tmp/saelab-cpu.lock .venv/bin/python bench/scale.py stages
    flock /tmp/saelab-cpu.lock .venv/bin/python bench/scale.py cooc
    .venv/bin/python bench/scale.py table
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "scale.json"
log = logging.getLogger("scale")


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cpus": os.cpu_count(), "machine": platform.machine(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def merge(key: str, value: dict) -> None:
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data[key] = value
    data["machine"] = machine()
    OUT.write_text(json.dumps(data, indent=2) + "\n")


# -- match and report at 131,072 × 16,384 --------------------------------------------------------------
D, N_A, N_B, N_TWIN = 2304, 131072, 16384, 4096
N_WINDOWS, CTX, SHARD, K_STORE, VOCAB = 64, 128, 32, 32, 49152


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthesise_match(root: Path, seed: int = 0) -> None:
    """Dictionaries `wide` (131,072) and `narrow` (16,384) at d 2,304, their stores and token windows."""
    from match import write_store  # bench/match.py: the same synthetic store writer
    from saelab.coders import CoderConfig, SparseCoder
    from saelab.data.tokens import TokenizeConfig, TokenWindows, hash_tokens, save_token_windows
    from saelab.workspace import Workspace

    rng = np.random.default_rng(seed)
    ws = Workspace(root)
    n_tok = N_WINDOWS * CTX
    tok = torch.from_numpy(rng.integers(3, VOCAB, (N_WINDOWS, CTX)).astype(np.int32))
    config = TokenizeConfig(ctx_len=CTX, n_tokens=n_tok, exclude=())
    cfg = {"artifact": "tokens", "tokens_hash": hash_tokens(tok), "ctx_len": CTX, "n_tokens": n_tok,
           "seed": seed, "exclude": [], "special_ids": [], "bos_id": None, "model": "smollm2-135m"}
    save_token_windows(TokenWindows(tok, torch.zeros_like(tok), [], [], None, config, cfg), ws.tokens)
    twins = rng.choice(N_A, N_TWIN, replace=False)  # latent i < N_TWIN of B is a near-twin of A's twins[i]
    cols = rng.integers(0, N_A, (n_tok, K_STORE))
    wide_acts = sp.csr_matrix((rng.exponential(1.0, n_tok * K_STORE).astype(np.float32) + 0.1, cols.ravel(),
                               np.arange(0, n_tok * K_STORE + 1, K_STORE)), shape=(n_tok, N_A))
    wide_acts.sum_duplicates()
    T = sp.csr_matrix((np.full(N_TWIN, 0.9, np.float32), (twins, np.arange(N_TWIN))), shape=(N_A, N_B))
    own = sp.csr_matrix((rng.exponential(1.0, n_tok * 8).astype(np.float32),
                         (rng.integers(0, n_tok, n_tok * 8), rng.integers(N_TWIN, N_B, n_tok * 8))), shape=(n_tok, N_B))
    narrow_acts = (wide_acts @ T + own).tocsr()
    for name, n in (("wide", N_A), ("narrow", N_B)):
        c = SparseCoder(CoderConfig("topk", d_in=D, d_sae=n, k=K_STORE, hookpoint="model.layers.12",
                                    model="gemma-2-2b"))
        with torch.no_grad():
            for lo in range(0, n, 16384):  # rows in blocks: no float64 [n, d] temporary
                hi = min(lo + 16384, n)
                rows = rng.standard_normal((hi - lo, D), dtype=np.float32)
                if name == "narrow" and lo == 0:
                    a_rows = torch.load(root / "twins.pt").numpy()
                    rows[:N_TWIN] = a_rows + 0.3 * _unit(rows[:N_TWIN])  # cosine ≈ 0.96
                rows = _unit(rows)
                c.W_dec[lo:hi] = torch.from_numpy(rows)
                c.W_enc[:, lo:hi] = torch.from_numpy(rows.T.copy())
            if name == "wide":
                torch.save(c.W_dec[torch.from_numpy(twins)].clone(), root / "twins.pt")
        c.save(ws.dictionary(name))
        write_store(ws, name, c, wide_acts if name == "wide" else narrow_acts, cfg["tokens_hash"], n_windows=N_WINDOWS,
                    ctx=CTX, shard=SHARD, model="smollm2-135m", block_windows=2)
        del c


def _peak(cmd: list[str], log_path: Path) -> dict:
    """Run `cmd` under /usr/bin/time -v; its wall seconds, peak RSS (GB) and exit status."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    log_path.write_text(p.stdout + p.stderr)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return {"cmd": " ".join(cmd[2:]), "rc": p.returncode, "wall_s": round(wall, 1),
            "peak_rss_gb": round(int(m.group(1)) / 2**20, 2) if m else None}


def measure_match(root: Path) -> dict:
    if not (root / "latents" / "narrow" / "cfg.json").exists():
        t0 = time.perf_counter()
        synthesise_match(root)
        log.info("synthetic 131K × 16K workspace in %.0f s", time.perf_counter() - t0)
    py = [sys.executable, "-m", "saelab"]
    out = {"sizes": {"n_a": N_A, "n_b": N_B, "d": D, "tokens": N_WINDOWS * CTX, "k_store": K_STORE,
                     "planted_twins": N_TWIN},
           "match": _peak([*py, "match", "--a", "wide", "--b", "narrow", "-w", str(root), "--overwrite"],
                          root / "match.log")}
    cfg_path = root / "match" / "wide__narrow" / "cfg.json"
    if cfg_path.exists():
        cfg = json.loads(cfg_path.read_text())
        out["match"].update({"timings_s": cfg["timings_s"], "headline": cfg["headline"]["text"],
                             "correlation_file_mb": round((cfg_path.parent / "correlation.safetensors").stat().st_size
                                                          / 1e6, 1)})
    out["report"] = _peak([*py, "report", str(root), "--max-latent-pages", "200"], root / "report.log")
    out["dense_float32_gb"] = round(N_A * N_B * 4 / 1e9, 2)
    out["dictionary_gb"] = round(sum(f.stat().st_size for f in (root / "dictionaries").rglob("*") if f.is_file())
                                 / 1e9, 2)
    return out


# -- stage cores on random-weight models of the real configs -----------------------------------------
# config.json values of google/gemma-2-2b and meta-llama/Llama-3.1-8B (transformers' Gemma2Config defaults are
# the 2B's, LlamaConfig's are Llama-1-7B's: every value is set here)
GEMMA_2_2B = {"model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"], "hidden_size": 2304,
              "intermediate_size": 9216, "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
              "head_dim": 256, "vocab_size": 256000, "hidden_activation": "gelu_pytorch_tanh",
              "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "sliding_window": 4096,
              "query_pre_attn_scalar": 256, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
              "tie_word_embeddings": True, "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 1}
LLAMA_31_8B = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
               "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
               "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256, "hidden_act": "silu",
               "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
               "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 8192, "rope_type": "llama3"},
               "tie_word_embeddings": False, "bos_token_id": 128000, "eos_token_id": 128001}
MODELS = {"gemma-2-2b": (GEMMA_2_2B, 12), "llama-3.1-8b": (LLAMA_31_8B, 16)}
"""name → (config, hookpoint layer: resid_post of layer 12 of 26 — Gemma Scope's most used — and 16 of 32)"""
WIDTHS = (16384, 65536, 131072)
CTX_LEN, BATCH_WINDOWS, K = 256, 8, 32  # TokenizeConfig.ctx_len, TrainConfig.batch_size, DictionarySpec.k


def _median_time(fn, repeat: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _model(config: dict, n_layers: int, dtype: torch.dtype):
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.for_model(**{**config, "num_hidden_layers": n_layers})
    if config["model_type"] == "gemma2":
        cfg.layer_types = cfg.layer_types[:n_layers]
    with torch.device("cpu"):
        model = AutoModel.from_config(cfg, dtype=dtype, attn_implementation="eager" if config["model_type"] == "gemma2"
                                      else "sdpa")
    return model.eval()


def measure_forward(name: str, config: dict, ctx: int = 1024) -> dict:
    """Per-layer and embedding time of the base model (no head) in bf16 on one [1, ctx] sequence, from 1 and
    3 decoder layers (per layer = (t3 − t1) / 2); parameters per layer and of the embedding counted."""
    ids = torch.randint(0, 32000, (1, ctx))
    out = {"ctx": ctx, "dtype": "bfloat16"}
    times, params = {}, {}
    for n in (1, 3):
        model = _model(config, n, torch.bfloat16)
        params[n] = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            times[n] = _median_time(lambda m=model: m(input_ids=ids, use_cache=False), repeat=2)
        del model
    per_layer, layer_params = (times[3] - times[1]) / 2, (params[3] - params[1]) // 2
    out.update({"params_per_layer": layer_params, "params_embedding": params[1] - layer_params,
                "s_per_layer_per_token": per_layer / ctx, "s_embed_per_token": max(times[1] - per_layer, 0.0) / ctx,
                "t_1_layer_s": round(times[1], 3), "t_3_layers_s": round(times[3], 3)})
    log.info("%s forward: %s", name, out)
    return out


def saelab_path(name: str, config: dict, layer: int) -> dict:
    """Whether saelab's own loader and activation reader take a local directory of the config (2 layers, the
    hookpoint at layer 1) with SmolLM2's tokenizer files, as `random:DIR@0`."""
    from saelab.activations import ActivationReader
    from saelab.models.load import load_model

    d = Path(f"/tmp/saelab-scale-models/{name}-2l")
    d.mkdir(parents=True, exist_ok=True)
    cfg = {**config, "num_hidden_layers": 2}
    if config["model_type"] == "gemma2":
        cfg["layer_types"] = ["sliding_attention", "full_attention"]
    (d / "config.json").write_text(json.dumps(cfg))
    tok_dir = Path.home() / ".cache/saelab/models/smollm2-135m"
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok_dir / f, d / f)
    try:
        t0 = time.perf_counter()
        lm = load_model(f"random:{d}@0", dtype="bfloat16")
        load_s = time.perf_counter() - t0
        ids = torch.randint(0, 49152, (2, CTX_LEN))  # SmolLM2's ids, all below either vocabulary
        acts = ActivationReader(lm.model, ["model.layers.1"])(ids)["model.layers.1"]
        return {"ok": True, "load_s": round(load_s, 1), "activation_shape": list(acts.shape),
                "dtype": str(acts.dtype), "spec": f"random:{d}@0"}
    except Exception as e:  # noqa: BLE001 (a bench records what failed)
        return {"ok": False, "error": f"{type(e).__name__}: {e}"[:400]}


def measure_train_step(d: int, d_sae: int) -> dict:
    """Seconds of one `DictionaryTrainer.step` at the trainer's defaults (TopK, k 32, batch 8 × 256 tokens)."""
    from saelab.train.config import DictionarySpec, TrainConfig
    from saelab.train.trainer import DictionaryTrainer, coder_config

    spec = DictionarySpec("s", "model.layers.12", d_sae, k=K)
    config = TrainConfig(dictionaries=(spec,))
    t = DictionaryTrainer(spec, coder_config(spec, d, d, "model.layers.12", None, "scale"), config, total_steps=10_000)
    x = torch.randn(BATCH_WINDOWS * CTX_LEN, d)
    s = _median_time(lambda: t.step(x, x), repeat=3)
    return {"d": d, "d_sae": d_sae, "tokens_per_step": x.shape[0], "s_per_step": round(s, 3),
            "tokens_per_s": round(x.shape[0] / s, 1), "encoder_dtype": str(t.select_dtype)}


def measure_cache_eval(d: int, d_sae: int, rows: int = 512) -> dict:
    """The cache's encode + shard builder add (per token) and the eval's encode + decode, fp32 coder."""
    from saelab.coders import CoderConfig, SparseCoder
    from saelab.latents.shard import ShardBuilder

    c = SparseCoder(CoderConfig("topk", d_in=d, d_sae=d_sae, k=K, hookpoint="model.layers.12"))
    x = torch.randn(rows, d)
    coords = torch.stack(torch.meshgrid(torch.arange(rows // CTX_LEN), torch.arange(CTX_LEN), indexing="ij"),
                         -1).reshape(-1, 2)
    with torch.no_grad():
        enc = _median_time(lambda: c.encode(x))
        fwd = _median_time(lambda: c(x))
        z = c.encode(x)

        def add() -> None:
            ShardBuilder(0, 0, rows // CTX_LEN, d_sae, CTX_LEN, torch.bfloat16).add(z, coords)

        builder = _median_time(add)
    return {"d": d, "d_sae": d_sae, "s_per_token_encode": enc / rows, "s_per_token_shard_add": builder / rows,
            "s_per_token_encode_decode": fwd / rows}


def measure_cooc(store_dir: Path) -> dict | None:
    """Token-level co-occurrence counting of the synthetic 131,072-latent store (k 32 per token)."""
    from saelab.cooc.config import CoocConfig
    from saelab.cooc.run import count
    from saelab.data.tokens import load_token_windows
    from saelab.latents.store import LatentStore

    if not (store_dir / "latents" / "wide" / "cfg.json").exists():
        return None
    store, windows = LatentStore(store_dir / "latents" / "wide"), load_token_windows(store_dir / "tokens")
    t0 = time.perf_counter()
    counts, used = count(CoocConfig(level="token"), store, windows)
    s = time.perf_counter() - t0
    return {"d_sae": store.d_sae, "level": "token", "tokens": int(used["tokens_used"]), "s": round(s, 2),
            "s_per_token": s / max(used["tokens_used"], 1), "pairs": int(counts.pairs.nnz)}


def ceiling() -> dict:
    """GFLOP/s of a 2048² matmul in fp32 and bf16 on this CPU."""
    out = {}
    for name, dtype in (("fp32_flops", torch.float32), ("bf16_flops", torch.bfloat16)):
        a = torch.randn(2048, 2048, dtype=dtype)
        out[name] = 2 * 2048**3 / _median_time(lambda a=a: a @ a)
    return out


def measure_stages(match_dir: Path) -> dict:
    out: dict = {"ceiling": ceiling(), "models": {}, "train": [], "cache_eval": []}
    log.info("ceiling %s", out["ceiling"])
    for name, (config, layer) in MODELS.items():
        out["models"][name] = {"hookpoint_layer": layer, "forward": measure_forward(name, config),
                               "saelab_path": saelab_path(name, config, layer)}
        log.info("%s: %s", name, out["models"][name]["saelab_path"])
    for d, d_sae in ((2304, 16384), (2304, 65536), (4096, 16384)):
        out["train"].append(measure_train_step(d, d_sae))
        log.info("train %s", out["train"][-1])
    for d, d_sae in ((2304, 16384), (2304, 65536), (2304, 131072), (4096, 16384), (4096, 65536)):
        out["cache_eval"].append(measure_cache_eval(d, d_sae))
        log.info("cache/eval %s", out["cache_eval"][-1])
    out["cooc"] = measure_cooc(match_dir)
    return out


# -- the table: FLOPs, bytes, memory and hours from the measured rates ------------------------------------
TRAIN_TOKENS, CACHE_TOKENS, EVAL_TOKENS, EVAL_CE_TOKENS, N_EXPLAINED = 100_000_000, 10_000_000, 131_072, 16_384, 1000
GPU = {"name": "80 GB H100 SXM (assumed)", "bf16_flops": 989e12, "utilisation": 0.4, "hbm_bytes_s": 3.35e12,
       "allreduce_bytes_s": 450e9 * 0.5}
"""peak dense bf16 989 TFLOP/s used at 40%; HBM 3.35 TB/s; NVLink all-reduce at half of 450 GB/s"""
INTERP_S_PER_LATENT = {"explain": 15.7, "detection": 40.0, "fuzz": 11.2}
"""bench/RESULTS.md, auto-interp on this CPU in bf16 (qwen2.5-coder-1.5b q4 GGUF explainer and judge, 20 train
examples of 32 tokens, 16 detection questions): explain 15.7 s, detection 39–41 s, fuzz 11.2 s per latent"""
INTERP_TOKENS_PER_LATENT = 20 * 32 + 400 + 2 * 16 * (32 + 120)  # explain prompt + detection and fuzz prompts
INTERP_PARAMS = 1.5e9


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares (c0, c1) of seconds ≈ c0 + c1 · x."""
    x, y = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    c1, c0 = np.polyfit(x, y, 1)
    return float(max(c0, 0.0)), float(c1)


def estimate(stages: dict, match: dict | None, name: str, d_sae: int) -> dict:
    """One row of the table (formulas in the docstrings of scale.json's `assumptions`)."""
    config, layer = MODELS[name]
    m = stages["models"][name]["forward"]
    d, vocab, n_layers = config["hidden_size"], config["vocab_size"], config["num_hidden_layers"]
    attn = config["num_attention_heads"] * config["head_dim"]
    n_hook = layer + 1  # resid_post of `layer`: layers 0 … layer
    fwd_hook = 2 * n_hook * m["params_per_layer"] + 4 * n_hook * (CTX_LEN / 2) * attn  # per token
    fwd_full = 2 * n_layers * m["params_per_layer"] + 4 * n_layers * (CTX_LEN / 2) * attn + 2 * d * vocab
    s_fwd_hook = m["s_embed_per_token"] + n_hook * m["s_per_layer_per_token"]
    s_head = 2 * d * vocab / stages["ceiling"]["bf16_flops"]  # the unembedding, not in the base model timed
    s_fwd_full = m["s_embed_per_token"] + n_layers * m["s_per_layer_per_token"] + s_head
    n_params = 2 * d * d_sae
    c0, c1 = _fit([(t["d"] * t["d_sae"], t["s_per_step"] / t["tokens_per_step"]) for t in stages["train"]])
    s_train_tok = c0 + c1 * d * d_sae
    e0, e1 = _fit([(c["d"] * c["d_sae"], c["s_per_token_encode"] + c["s_per_token_shard_add"])
                   for c in stages["cache_eval"]])
    s_cache_tok = e0 + e1 * d * d_sae
    f0, f1 = _fit([(c["d"] * c["d_sae"], c["s_per_token_encode_decode"]) for c in stages["cache_eval"]])
    s_eval_coder = f0 + f1 * d * d_sae
    flops = {"train": TRAIN_TOKENS * (fwd_hook + 2 * d * d_sae + 8 * K * d),
             "cache": CACHE_TOKENS * (fwd_hook + 2 * d * d_sae),
             "eval": EVAL_TOKENS * (fwd_hook + 2 * d * d_sae + 2 * K * d) + EVAL_CE_TOKENS * 3 * fwd_full,
             "interp": N_EXPLAINED * 2 * INTERP_PARAMS * INTERP_TOKENS_PER_LATENT}
    cpu_s = {"train": TRAIN_TOKENS * (s_fwd_hook + s_train_tok), "cache": CACHE_TOKENS * (s_fwd_hook + s_cache_tok),
             "eval": EVAL_TOKENS * (s_fwd_hook + s_eval_coder) + EVAL_CE_TOKENS * 3 * s_fwd_full,
             "interp": N_EXPLAINED * sum(INTERP_S_PER_LATENT.values())}
    if stages.get("cooc"):
        cpu_s["cooc"] = CACHE_TOKENS * stages["cooc"]["s_per_token"]
    if match:
        # cosines: 3 GEMMs of n_a · n_b · d (primary, baseline, encoder agreement), ∝ d_sae · 16,384 · d
        scale = d_sae * 16384 * d / (match["sizes"]["n_a"] * match["sizes"]["n_b"] * match["sizes"]["d"])
        flops["match"] = 3 * 2 * d_sae * 16384 * d
        cpu_s["match"] = match["match"]["wall_s"] * scale
    gpu = GPU["bf16_flops"] * GPU["utilisation"]
    steps = TRAIN_TOKENS / (BATCH_WINDOWS * CTX_LEN)
    adam_bytes = n_params * (4 + 4 + 8) * 2  # weights, grads, two moments: read and written per step
    gpu1 = {k: v / gpu for k, v in flops.items()}
    gpu1["train"] += steps * adam_bytes / GPU["hbm_bytes_s"]
    allreduce = steps * 2 * n_params * 4 / GPU["allreduce_bytes_s"]  # fp32 gradients every step, ring ≈ 2× bytes
    gpu8 = {k: v / 8 for k, v in gpu1.items()}
    gpu8["train"] += allreduce
    # a 1.5B explainer/judge on a GPU is decode-latency bound, not FLOP bound: ~100 generated tokens per latent,
    # 64 latents per batch, ~30 ms per decode step → ~3 s per batch of 64, prefill included
    gpu1["interp"] = max(gpu1["interp"], N_EXPLAINED / 64 * 3.0)
    gpu8["interp"] = gpu1["interp"] / 8
    store_bytes_tok = K * (4 + 2) + 2  # int32 latent index + bf16 value per entry, + the row pointer share
    model_bytes = 2 * (m["params_embedding"] + n_hook * m["params_per_layer"])
    return {
        "model": name, "d_model": d, "d_sae": d_sae, "hookpoint_layer": layer,
        "params_to_hookpoint": int(m["params_embedding"] + n_hook * m["params_per_layer"]),
        "flops": {k: float(f"{v:.3g}") for k, v in flops.items()},
        "disk_gb": {"dictionary_fp32": n_params * 4 / 1e9, "checkpoint_fp32": 3 * n_params * 4 / 1e9,
                    "latent_store_10M": CACHE_TOKENS * store_bytes_tok / 1e9,
                    "activation_buffer_100M": TRAIN_TOKENS * d * 2 / 1e9},
        "peak_memory_gb": {
            "train": (model_bytes + n_params * 4 * 4 + d * d_sae * 4
                      + BATCH_WINDOWS * CTX_LEN * d_sae * 4 * 2) / 1e9,
            "cache": (model_bytes + n_params * 4 + BATCH_WINDOWS * CTX_LEN * d_sae * 4) / 1e9,
            # A's fp32 weights, then its unit decoder rows and the encoder-cosine copies: about the weights again
            "match_vs_16k": (2 * n_params * 4) / 1e9 + 0.3,
            "cooc_window_level_dense_bound": d_sae * (d_sae - 1) / 2 * 12 / 1e9},
        "hours_cpu": {k: v / 3600 for k, v in cpu_s.items()},
        "hours_1gpu": {k: v / 3600 for k, v in gpu1.items()},
        "hours_8gpu": {k: v / 3600 for k, v in gpu8.items()},
    }


def _g(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


STAGES = ("train", "cache", "eval", "cooc", "match", "interp")
ASSUMPTIONS = {
    "hookpoint": "resid_post of layer 12 of 26 (Gemma-2-2B) and 16 of 32 (Llama-3.1-8B): 13 and 17 decoder layers",
    "settings": "trainer defaults: TopK k 32, batch 8 windows × 256 tokens = 2,048 tokens per step, Adam fp32, "
                "encoder product in bf16 (auto on this CPU); cache and eval coders in fp32 (their dtype)",
    "forward": "FLOPs/token = 2 · params of the decoder layers to the hookpoint + 4 · layers · (ctx/2) · heads · "
               "head_dim (causal attention over 256-token windows); CPU seconds from 1- and 3-layer bf16 models "
               "of the real config, scaled linearly by the number of layers",
    "train": "FLOPs/token = forward + 2·d·d_sae (encoder) + 8·k·d (sparse decoder and backward); CPU rate fitted "
             "linearly in d·d_sae to DictionaryTrainer.step at (2304, 16K), (2304, 65K), (4096, 16K); GPU adds the "
             "Adam update, memory bound: 2·d·d_sae params × 16 B (weight, grad, 2 moments) read and written per step",
    "8 GPUs": "data parallel (saelab's torchrun path): compute / 8, plus a ring all-reduce of the fp32 gradients "
              "every step (2 × 8·d·d_sae bytes at 225 GB/s, half of NVLink's 450 GB/s)",
    "cache": "FLOPs/token = forward + 2·d·d_sae; CPU: SparseCoder.encode + ShardBuilder.add fitted in d·d_sae",
    "eval": "131,072 tokens of forward + encode + decode, plus 16,384 tokens × 3 full forwards with the "
            "unembedding (clean, spliced, zero-ablated; EvalConfig defaults)",
    "cooc": "token level, CPU only (scipy's sparse product per 1,024 tokens): the measured 131,072-latent rate on "
            "8,192 tokens of a random k-32 store, linear in tokens (the chunks' sums add a log factor, `PairSum`); "
            "memory is the distinct pairs, which a random store maximises; window level is bounded by d_sae²/2 "
            "pairs × 12 B (int64 pointers past 2³¹ pairs)",
    "match": "A = d_sae latents against a 16,384-latent B at the model's d; CPU: the measured 131,072 × 16,384 "
             "wall (bench match part) scaled by n_a·n_b·d; GPU: 3 cosine GEMMs (scores, baseline, encoder)",
    "interp": "CPU: bench/RESULTS.md's measured 15.7 s explain + 40 s detection + 11.2 s fuzz per latent "
              "(qwen2.5-coder-1.5b q4 GGUF, bf16, this CPU); GPU: decode-latency bound, 64 latents per batch at "
              "~3 s per batch",
    "gpu": "estimates, no GPU measured: 80 GB H100 SXM, bf16 dense 989 TFLOP/s at 40% utilisation, HBM 3.35 TB/s",
    "disk": "latent store: k × (4 B int32 index + 2 B bf16 value) + 2 B per token; activation buffer d × 2 B per "
            "token (only with epochs > 1 or steps); checkpoint: 3 × the dictionary in fp32 (weights, 2 Adam moments)",
    "memory": "train: model bf16 to the hookpoint + 16 B × 2·d·d_sae (weights, grads, Adam) + the initial decoder "
              "copy + two [2048, d_sae] fp32 batch arrays; cache: model + fp32 coder + one dense [2048, d_sae] "
              "latents batch; match: 2 × A's fp32 weights (the weights, then unit decoder rows and encoder-cosine "
              "copies of about their size) + 0.3 GB (measured 5.18 GB at 131,072 × 16,384, d 2,304)",
}


def write_table(data: dict, path: Path) -> str:
    """Two markdown tables: hours per stage (CPU measured / GPU estimated), then FLOPs, bytes and memory."""
    rows = data["estimates"]
    lines = ["| model | d_sae | " + " | ".join(f"{s} h: CPU / 1 GPU / 8 GPU" for s in STAGES) + " |",
             "| " + " | ".join(["---"] * (2 + len(STAGES))) + " |"]
    for r in rows:
        cells = []
        for st in STAGES:
            cpu, g1, g8 = (r[h].get(st) for h in ("hours_cpu", "hours_1gpu", "hours_8gpu"))
            cells.append(" / ".join("—" if v is None else _g(v) for v in (cpu, g1, g8)))
        lines.append(f"| {r['model']} | {r['d_sae']:,} | " + " | ".join(cells) + " |")
    lines += ["", "| model | d_sae | params to hookpoint | FLOPs train / cache / eval | dictionary GB | "
              "checkpoint GB | latent store GB (10M) | activation buffer GB (100M) | peak GB train / cache / match | "
              "cooc pairs bound GB |", "| " + " | ".join(["---"] * 10) + " |"]
    for r in rows:
        f, dk, mem = r["flops"], r["disk_gb"], r["peak_memory_gb"]
        lines.append(f"| {r['model']} | {r['d_sae']:,} | {r['params_to_hookpoint'] / 1e9:.2f} B | "
                     f"{f['train']:.2e} / {f['cache']:.2e} / {f['eval']:.2e} | {_g(dk['dictionary_fp32'])} | "
                     f"{_g(dk['checkpoint_fp32'])} | {_g(dk['latent_store_10M'])} | "
                     f"{_g(dk['activation_buffer_100M'])} | "
                     f"{_g(mem['train'])} / {_g(mem['cache'])} / {_g(mem['match_vs_16k'])} | "
                     f"{_g(mem['cooc_window_level_dense_bound'])} |")
    text = "\n".join(lines)
    path.write_text(text + "\n")
    return text


# -- CLI -----------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("match", "stages", "cooc", "table"))
    ap.add_argument("--dir", type=Path, default=Path("/tmp/saelab-scale-match"))
    ap.add_argument("--keep", action="store_true", help="Keep the synthetic match workspace (2.9 GB).")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.part == "match":
        args.dir.mkdir(parents=True, exist_ok=True)
        result = measure_match(args.dir)
        merge("match", result)
        print(json.dumps(result, indent=2))
        if not args.keep:
            shutil.rmtree(args.dir)
    elif args.part == "table":
        data = json.loads(OUT.read_text())
        data["estimates"] = [estimate(data["stages"], data.get("match"), name, w) for name in MODELS for w in WIDTHS]
        data["assumptions"] = ASSUMPTIONS
        OUT.write_text(json.dumps(data, indent=2) + "\n")
        print(write_table(data, Path("/tmp/results_scale_table.md")))
    elif args.part == "cooc":  # the co-occurrence rate alone (the synthetic store is made when missing)
        if not (args.dir / "latents" / "wide" / "cfg.json").exists():
            args.dir.mkdir(parents=True, exist_ok=True)
            synthesise_match(args.dir)
        data = json.loads(OUT.read_text())
        data["stages"]["cooc"] = result = measure_cooc(args.dir)
        merge("stages", data["stages"])
        print(json.dumps(result, indent=2))
        if not args.keep:
            shutil.rmtree(args.dir)
    elif args.part == "stages":
        result = measure_stages(args.dir)
        merge("stages", result)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
