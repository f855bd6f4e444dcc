"""Latent cache throughput and memory: saelab's `latents` stage vs EleutherAI delphi's `LatentCache`.

Same model (SmolLM2-135M, saelab's converted safetensors copy, which delphi loads too),
same sparsify-format dictionary (4096 latents, k=32 at layers.6, made and saved by
sparsify's own code), same token windows (the workspace's, ctx 256), same batch size (8),
in the same run. Each configuration runs in its own process, so its peak RSS (from
`os.wait4`) is its own; the clock covers caching and writing to disk, not model loading.

delphi runs (PEERS.md recipe): as users run it (full 30-layer model, fp32), and on equal
footing (the model truncated to 7 layers, fp32 and bf16). saelab runs as shipped (its
forward stops after layer 6 by itself), fp32 and bf16. Both sides encode every position;
saelab stores only text positions (sink position 0 and EOS separators excluded), delphi
stores all of them (SmolLM2 has no BOS for it to drop).

    .venv/bin/python bench/cache.py [--tokens 32768 131072] [--dir /tmp/saelab-bench-cache] [--out bench/cache.json]
                                    [--only "saelab" "delphi bf16"]

The peer side needs `.venv-peers` (eai-delphi, eai-sparsify; `make venv-peers` builds it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_PY = ROOT / ".venv-peers" / "bin" / "python"
HOOKPOINT, N_LATENTS, K, CTX, BATCH = "layers.6", 4096, 32, 256, 8
SHARD_WINDOWS = 64  # 16,384 tokens per shard: both token counts span several shards
# (label, side, dtype, truncated to 7 layers)
CONFIGS = [
    ("saelab bf16", "saelab", "bfloat16", False),
    ("saelab fp32", "saelab", "float32", False),
    ("delphi fp32, full model (as users run it)", "delphi", "float32", False),
    ("delphi fp32, 7 layers (equal footing)", "delphi", "float32", True),
    ("delphi bf16, 7 layers (equal footing)", "delphi", "bfloat16", True),
]


# -- children: each runs in its own process ------------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_reset() -> int:
    """Reset this process's peak RSS (Linux clear_refs 5), so that loading the model, whose
    transient peak is larger than the cache's, does not hide growth; return the RSS now (bytes)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS") * 1024


def rss_peak() -> int:
    """Peak RSS since `rss_reset` (bytes)."""
    return _status_kb("VmHWM") * 1024


def child_make_sae(out: Path) -> None:
    """(peer venv) A random sparsify SparseCoder, saved by sparsify's own `save_to_disk`."""
    import torch
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(0)
    sae = SparseCoder(576, SparseCoderConfig(num_latents=N_LATENTS, k=K))
    sae.save_to_disk(out / HOOKPOINT)


def _stub_vllm() -> None:
    """delphi imports vllm (CUDA only) at import time: a stand-in module, as PEERS.md says."""
    import types

    mods = {n: types.ModuleType(n) for n in ("vllm", "vllm.distributed", "vllm.distributed.parallel_state",
                                             "vllm.inputs")}
    mods["vllm"].LLM = mods["vllm"].SamplingParams = object
    ps = mods["vllm.distributed.parallel_state"]
    ps.destroy_distributed_environment = ps.destroy_model_parallel = lambda *a, **k: None
    mods["vllm.inputs"].TokensPrompt = dict
    mods["vllm"].distributed, mods["vllm"].inputs = mods["vllm.distributed"], mods["vllm.inputs"]
    mods["vllm.distributed"].parallel_state = ps
    sys.modules.update(mods)


def child_delphi(a: argparse.Namespace) -> dict:
    """(peer venv) delphi's LatentCache over the workspace's windows."""
    _stub_vllm()
    import torch
    from delphi.config import CacheConfig, ConstructorConfig, RunConfig, SamplerConfig
    from delphi.latents import LatentCache
    from delphi.sparse_coders import load_hooks_sparse_coders
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=getattr(torch, a.dtype)).eval()
    if a.truncate:
        model.model.layers = model.model.layers[:7]  # identical activations at layer 6 (PEERS.md)
    run_cfg = RunConfig(cache_cfg=CacheConfig(batch_size=BATCH, cache_ctx_len=CTX, n_tokens=a.n_tokens),
                        constructor_cfg=ConstructorConfig(), sampler_cfg=SamplerConfig(), model=a.model_dir,
                        sparse_model=a.sae, hookpoints=[HOOKPOINT])
    hooks, transcode = load_hooks_sparse_coders(model, run_cfg)
    tokens = load_file(str(Path(a.tokens) / "tokens.safetensors"))["tokens"].long()
    before = rss_reset()
    t0 = time.perf_counter()
    cache = LatentCache(model, hooks, batch_size=BATCH, transcode=transcode)
    cache.run(a.n_tokens, tokens)
    cache.save_splits(n_splits=5, save_dir=Path(a.out))
    return {"seconds": time.perf_counter() - t0, "rss_before": before, "rss_peak_caching": rss_peak()}


def child_saelab(a: argparse.Namespace) -> dict:
    """(saelab venv) saelab's latent cache over the workspace's windows."""
    from saelab.coders import load_dictionary
    from saelab.data.tokens import load_token_windows
    from saelab.latents import CacheConfig, LatentStore, run
    from saelab.models import load_model
    from saelab.workspace import Workspace

    lm = load_model("smollm2-135m", dtype=a.dtype)
    windows = load_token_windows(a.tokens)
    coder = load_dictionary(Path(a.sae) / HOOKPOINT)
    config = CacheConfig(batch_size=BATCH, shard_windows=SHARD_WINDOWS, n_windows=a.n_tokens // CTX)
    before = rss_reset()
    t0 = time.perf_counter()
    paths = run(config, Workspace(Path(a.out)), lm, windows, {"sae": coder}, progress=False)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rss_before": before, "rss_peak_caching": rss_peak(),
            "mean_l0": LatentStore(paths["sae"]).summary()["mean_l0"]}


# -- the driver --------------------------------------------------------------------------------------
def spawn(python: Path, args: list[str]) -> tuple[dict, int]:
    """Run this file as a child; return its JSON result and its peak RSS in bytes."""
    result = Path(args[args.index("--out") + 1] + ".json")
    proc = subprocess.Popen([str(python), __file__, *args], env={**os.environ, "HF_HUB_OFFLINE": "1",
                                                                  "TOKENIZERS_PARALLELISM": "false"})
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child failed: {python} {__file__} {' '.join(args)}")
    return json.loads(result.read_text()), usage.ru_maxrss * 1024


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def prepare(work: Path, n_tokens: int) -> tuple[Path, Path, Path]:
    """Token windows (saelab's tokens stage, embedded corpus) and the sparsify dictionary, made once."""
    from saelab.data.run import TokensConfig
    from saelab.data.run import run as tokens_run
    from saelab.models import load_model

    lm = load_model("smollm2-135m")
    ws = work / "ws"
    from saelab.workspace import Workspace

    windows = tokens_run(TokensConfig(ctx_len=CTX, n_tokens=n_tokens), Workspace(ws), lm)
    assert windows.n_tokens >= n_tokens, windows.n_tokens
    sae = work / "sparsify-sae"
    if not (sae / HOOKPOINT / "sae.safetensors").exists():
        subprocess.run([str(PEER_PY), __file__, "_make_sae", "--out", str(sae)], check=True)
    return ws / "tokens", sae, Path(lm.path)


def measure(work: Path, counts: list[int], only: list[str] | None) -> list[dict]:
    tokens, sae, model_dir = prepare(work, max(counts))
    rows = []
    for n in counts:
        for label, side, dtype, truncate in CONFIGS:
            if only and not any(label.startswith(o) for o in only):
                continue
            out = work / "runs" / f"{side}-{dtype}-{'trunc' if truncate else 'full'}-{n}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            args = [f"_{side}", "--out", str(out), "--tokens", str(tokens), "--sae", str(sae), "--dtype", dtype,
                    "--n-tokens", str(n), "--model-dir", str(model_dir)] + (["--truncate"] if truncate else [])
            res, rss = spawn(PEER_PY if side == "delphi" else Path(sys.executable), args)
            row = {"label": label, "side": side, "dtype": dtype, "truncated": truncate, "n_tokens": n,
                   "seconds": res["seconds"], "tok_per_s": n / res["seconds"], "peak_rss_bytes": rss,
                   "caching_rss_growth_bytes": res["rss_peak_caching"] - res["rss_before"],
                   "disk_bytes": dir_bytes(out)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| run | tokens | tok/s | peak RSS (process) | RSS growth while caching | on disk |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        growth = r.get("caching_rss_growth_bytes")
        shown = "—" if growth is None else f"{growth / 2**20:,.0f} MiB"
        lines.append(f"| {r['label']} | {r['n_tokens']:,} | {r['tok_per_s']:,.0f} | "
                     f"{r['peak_rss_bytes'] / 2**30:.2f} GiB | {shown} | {r['disk_bytes'] / 2**20:.1f} MiB |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="bench", choices=["bench", "_make_sae", "_delphi", "_saelab"])
    ap.add_argument("--tokens", nargs="*", default=None)
    ap.add_argument("--dir", default="/tmp/saelab-bench-cache")
    ap.add_argument("--out", default=str(ROOT / "bench" / "cache.json"))
    ap.add_argument("--sae"), ap.add_argument("--dtype"), ap.add_argument("--model-dir")
    ap.add_argument("--n-tokens", type=int), ap.add_argument("--truncate", action="store_true")
    ap.add_argument("--only", nargs="*",
                    help="Measure only the runs whose label starts with one of these; merge into --out.")
    a = ap.parse_args()
    if a.mode == "_make_sae":
        return child_make_sae(Path(a.out))
    if a.mode in ("_delphi", "_saelab"):
        a.tokens = a.tokens[0]
        res = (child_delphi if a.mode == "_delphi" else child_saelab)(a)
        Path(a.out + ".json").write_text(json.dumps(res))
        return
    counts = [int(t) for t in (a.tokens or [32768, 131072])]
    rows = measure(Path(a.dir), counts, a.only)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "batch_size": BATCH, "ctx": CTX,
            "saelab_shard_windows": SHARD_WINDOWS,
            "dictionary": f"sparsify SparseCoder, {N_LATENTS} latents, k={K}, {HOOKPOINT}"}
    out = Path(a.out)
    if a.only and out.exists():  # keep the other side's rows, replace the re-measured ones
        fresh = {(r["label"], r["n_tokens"]) for r in rows}
        rows = [r for r in json.loads(out.read_text())["rows"] if (r["label"], r["n_tokens"]) not in fresh] + rows
        rows.sort(key=lambda r: (r["n_tokens"], [c[0] for c in CONFIGS].index(r["label"])))
    out.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
