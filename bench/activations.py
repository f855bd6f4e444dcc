"""Tokens/s of saelab's activation stream vs a full Hugging Face forward with
`output_hidden_states=True` (how most tools collect activations), side by side.

Same model (SmolLM2-135M), same token windows of the embedded corpus, same batch size,
same hookpoint (resid_post.6 = hidden_states[7]), fp32 and bf16. Prints a Markdown table
with the ratio and the achieved fraction of this CPU's ceiling (DESIGN.md §7).

    .venv/bin/python bench/activations.py [--n-windows 48] [--batch-size 8] [--out bench/activations.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from datetime import date

import torch

from saelab.activations import StreamConfig, stream_activations
from saelab.data import TokenizeConfig, load_corpus, tokenize_corpus
from saelab.models import load_model

LAYER = 6


@functools.lru_cache(maxsize=None)
def ceiling_gflops(dtype: str) -> float:
    """This machine's matmul peak in `dtype`, measured here (never assumed: 175 fp32 / 645 bf16 GFLOP/s on the
    2-core AMX Xeon of DESIGN.md §7; 72–138 fp32 / 0.28–1.4 bf16 on a 2-core AVX2 EPYC, run to run):
    the best of 3 products of 2048² matrices, or of one 512² product where that alone takes over 0.2 s
    (bf16 without bf16 units)."""
    dt = getattr(torch, dtype)

    def best(n: int, reps: int) -> float:
        a = torch.randn(n, n).to(dt)
        a @ a
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - t0)
        return 2 * n**3 / min(times) / 1e9

    small = best(512, 1)
    return small if 2 * 512**3 / small / 1e9 > 0.2 else max(small, best(2048, 3))


def cpu_name() -> str:
    """The CPU's model name (Linux), else what `platform` knows: benchmarks say which machine they ran on."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def flops_per_token(cfg, n_layers: int, ctx: int, with_head: bool) -> float:
    """Matmul FLOPs per token: projections + MLP per layer, causal attention, optional unembedding."""
    d, f = cfg.hidden_size, cfg.intermediate_size
    d_kv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
    per_layer = 2 * (d * d * 2 + d * d_kv * 2 + 3 * d * f)  # q, o, k, v, gate/up/down
    attention = 2 * 2 * (ctx / 2) * d  # QK^T and AV over the causal half, averaged
    total = n_layers * (per_layer + attention)
    return total + (2 * d * cfg.vocab_size if with_head else 0)


def time_saelab(lm, windows, batch_size: int) -> float:
    n = 0
    t0 = time.perf_counter()
    for batch in stream_activations(lm, windows, ["resid_post.6"], StreamConfig(batch_size=batch_size), progress=False):
        x = batch.acts["model.layers.6"]
        n += x.shape[0] * x.shape[1]
    return n / (time.perf_counter() - t0)


@torch.inference_mode()
def time_hidden_states(lm, windows, batch_size: int) -> float:
    n = 0
    t0 = time.perf_counter()
    for lo in range(0, windows.n_windows, batch_size):
        ids = windows.tokens[lo : lo + batch_size].long()
        x = lm.model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states[LAYER + 1]
        n += x.shape[0] * x.shape[1]
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-windows", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--ctx-len", type=int, default=256)
    ap.add_argument("--out", default="bench/activations.json")
    args = ap.parse_args()

    rows = []
    for dtype in ("float32", "bfloat16"):
        lm = load_model("smollm2-135m", dtype=dtype)
        windows = tokenize_corpus(load_corpus("mixed-en"), lm.tokenizer,
                                  TokenizeConfig(ctx_len=args.ctx_len, n_tokens=args.n_windows * args.ctx_len))
        warm = tokenize_corpus(load_corpus("mixed-en"), lm.tokenizer,
                               TokenizeConfig(ctx_len=args.ctx_len, n_tokens=args.ctx_len * args.batch_size, seed=99))
        time_saelab(lm, warm, args.batch_size), time_hidden_states(lm, warm, args.batch_size)  # warm-up
        ours = time_saelab(lm, windows, args.batch_size)
        theirs = time_hidden_states(lm, windows, args.batch_size)
        f_ours = flops_per_token(lm.config, LAYER + 1, args.ctx_len, with_head=False)
        f_theirs = flops_per_token(lm.config, lm.n_layers, args.ctx_len, with_head=True)
        rows.append({"dtype": dtype, "tokens": windows.n_tokens, "saelab_tok_s": ours, "hidden_states_tok_s": theirs,
                     "ratio": ours / theirs, "saelab_gflops": ours * f_ours / 1e9,
                     "hidden_states_gflops": theirs * f_theirs / 1e9, "ceiling_gflops": ceiling_gflops(dtype)})
    result = {"date": date.today().isoformat(), "machine": f"{cpu_name()}, {torch.get_num_threads()} threads",
              "torch": torch.__version__, "model": "smollm2-135m", "hookpoint": "resid_post.6",
              "batch_size": args.batch_size, "ctx_len": args.ctx_len, "rows": rows}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"{result['date']}, {result['machine']}, torch {result['torch']}, SmolLM2-135M resid_post.6, "
          f"{rows[0]['tokens']:,} tokens, batch {args.batch_size} × ctx {args.ctx_len}\n")
    print("| dtype | saelab stream (tok/s) | HF full forward + hidden_states (tok/s) | ratio "
          "| saelab GFLOP/s (% of dtype ceiling) | full forward GFLOP/s (%) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['dtype']} | {r['saelab_tok_s']:,.0f} | {r['hidden_states_tok_s']:,.0f} | {r['ratio']:.1f}× | "
              f"{r['saelab_gflops']:.0f} ({100 * r['saelab_gflops'] / r['ceiling_gflops']:.0f}%) | "
              f"{r['hidden_states_gflops']:.0f} ({100 * r['hidden_states_gflops'] / r['ceiling_gflops']:.0f}%) |")


if __name__ == "__main__":
    main()
