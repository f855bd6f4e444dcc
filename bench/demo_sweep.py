"""The sweep behind the demo's training defaults: passes, batch size and rate at the demo's budget.

    flock /tmp/saelab-cpu.lock .venv/bin/python bench/demo_sweep.py --workspace /tmp/sweep-ws \\
        --configs 1:8:1 4:8:1 4:4:2 --out bench/demo_sweep.json

Each config `EPOCHS:BATCH_WINDOWS:LR_MULTIPLIER[:DEAD_TOKENS]` trains the demo's two SAEs ("full", 2,048 latents,
and "ultra", 16,384; TopK k = 32; SmolLM2-135M-Instruct `resid_post.6`) from ONE activation buffer
of the demo's 327,680 training tokens (built once, reused by every config), with the rate
multiplier times saelab's default (2e-4 / sqrt(d_sae / 2^14)). For each it records:

- held-out FVU of both on the demo's evaluation windows (the 128 after the training ones; text
  positions, one formula for all); latents that never fire on the 325K training tokens (what the
  cache counts as dead) and latents firing on > 10% of them (dense); the decoder rows' median cosine
  to their initialisation;
- matching: one-to-one partners of full's latents in ultra by decoder cosine (Hungarian assignment,
  as `saelab match` does), the share at cosine ≥ 0.7 (the demo's goal: 25%), and the same for a
  random rotation of full's decoder (chance);
- seconds of training (buffer excluded; it is timed once).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from saelab.activations.buffer import ActivationBuffer
from saelab.data.run import TokensConfig
from saelab.data.run import run as tokens_run
from saelab.match.assignment import hungarian
from saelab.models.load import DEFAULT_MODEL, cpu_bf16, load_model
from saelab.train import run as train_run
from saelab.train.config import DictionarySpec, TrainConfig, default_lr
from saelab.train.source import model_reader
from saelab.workspace import Workspace

TRAIN_TOKENS, EVAL_TOKENS, HOOK = 327_680, 32_768, "resid_post.6"
WIDTHS = {"full": 2048, "ultra": 16384}


def one_to_one(a: torch.Tensor, b: torch.Tensor, threshold: float = 0.7) -> tuple[float, float]:
    """(share of a's rows with a one-to-one partner in b at cosine ≥ threshold, median partner cosine)."""
    cos = (torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T).numpy()
    s = hungarian(cos).score  # the assignment `saelab match` makes
    return float((s >= threshold).mean()), float(np.median(s))


def held_out_fvu(coder, x: torch.Tensor) -> float:
    with torch.no_grad():
        x_hat = coder(x).x_hat
    return float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def firing(coder, buffer: ActivationBuffer) -> tuple[float, float]:
    """(share of latents that never fire on the buffer's tokens, share firing on > 10% of them): the cache's
    and eval's definitions of dead and dense, over the training tokens."""
    counts = torch.zeros(coder.d_sae)
    hp = buffer.hookpoints[0]
    with torch.no_grad():
        for lo in range(0, buffer.n_rows, 8192):
            x = buffer.rows(hp, torch.arange(lo, min(lo + 8192, buffer.n_rows)))
            counts += (coder.encode(x) > 0).sum(0).float()
    return float((counts == 0).float().mean()), float((counts > 0.1 * buffer.n_rows).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", type=Path, required=True)
    p.add_argument("--configs", nargs="+", default=["1:8:1", "4:8:1"], help="EPOCHS:BATCH_WINDOWS:LR_MULT")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.manual_seed(0)
    ws = Workspace.at(args.workspace)
    lm = load_model(DEFAULT_MODEL, dtype="auto")
    windows = tokens_run(TokensConfig(corpus="mixed-en", n_tokens=TRAIN_TOKENS + EVAL_TOKENS), ws, lm)
    n_train = TRAIN_TOKENS // windows.ctx_len
    read = model_reader(lm, windows, ["model.layers.6"], 8)
    acts, mask = read(n_train, n_train + EVAL_TOKENS // windows.ctx_len)
    x_eval = next(iter(acts.values()))[mask].float()
    results = []
    for spec_text in args.configs:
        epochs, batch, mult, *dead = spec_text.split(":")
        epochs, batch, mult = float(epochs), int(batch), float(mult)
        dead_tokens = int(dead[0]) if dead else 10_000_000
        tag = spec_text.replace(":", "_").replace(".", "p")
        specs = tuple(DictionarySpec(f"{tag}-{n}", HOOK, d, 32, lr=mult * default_lr(d)) for n, d in WIDTHS.items())
        config = TrainConfig(specs, n_tokens=TRAIN_TOKENS, batch_size=batch, epochs=epochs, checkpoint_every=0,
                             dead_tokens=dead_tokens)
        t0 = time.perf_counter()
        train_run(config, ws, lm, windows, run_name=f"sweep-{tag}", resume=False, progress=False)
        seconds = time.perf_counter() - t0
        from saelab.coders import load_dictionary

        coders = {n: load_dictionary(ws.dictionary(f"{tag}-{n}")) for n in WIDTHS}
        rec = {"config": spec_text, "epochs": epochs, "batch_windows": batch, "lr_multiplier": mult,
               "dead_tokens": dead_tokens, "seconds": seconds}
        buffer = ActivationBuffer(next(iter(coders.values())).cfg.extra["training"]["buffer"])
        for n, c in coders.items():
            t = c.cfg.extra["training"]
            never, dense = firing(c, buffer)
            rec[n] = {"heldout_fvu": held_out_fvu(c, x_eval), "dead_fraction": t["final"]["dead_fraction"],
                      "never_fired_on_training_tokens": never, "dense_fraction_gt_10pct": dense,
                      "decoder_cos_init": t["final"]["decoder_cos_init"], "steps": t["steps"], "lr": t["lr"]}
        full, ultra = coders["full"].W_dec.detach().float(), coders["ultra"].W_dec.detach().float()
        rec["one_to_one_0.7"], rec["median_partner_cos"] = one_to_one(full, ultra)
        q, _ = torch.linalg.qr(torch.randn(full.shape[1], full.shape[1], generator=torch.Generator().manual_seed(0)))
        rec["chance_one_to_one_0.7"], rec["chance_median_partner_cos"] = one_to_one(full @ q, ultra)
        results.append(rec)
        print(json.dumps(rec), flush=True)
    out = {"measured": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": platform.processor()
           or platform.machine(), "cpu": _cpu(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "model_dtype": str(lm.dtype), "eval_tokens": int(x_eval.shape[0]), "results": results}
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))
    print("| epochs | batch (windows) | lr × | dead after (tokens) | steps | seconds | FVU full | FVU ultra | "
          "never fired full / ultra | dense full / ultra | "
          "cos to init full / ultra | one-to-one ≥ 0.7 | chance |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        f, u = r["full"], r["ultra"]
        print(f"| {r['epochs']:g} | {r['batch_windows']} | {r['lr_multiplier']:g} | {r['dead_tokens']:,} | "
              f"{f['steps']} | {r['seconds']:.0f} | {f['heldout_fvu']:.3f} | {u['heldout_fvu']:.3f} | "
              f"{f['never_fired_on_training_tokens']:.1%} / {u['never_fired_on_training_tokens']:.1%} | "
              f"{f['dense_fraction_gt_10pct']:.1%} / {u['dense_fraction_gt_10pct']:.1%} | "
              f"{f['decoder_cos_init']:.2f} / {u['decoder_cos_init']:.2f} | {r['one_to_one_0.7']:.1%} | "
              f"{r['chance_one_to_one_0.7']:.1%} |")


def _cpu() -> str:
    """The CPU's name and whether it multiplies bf16 fast (the rule `--dtype auto` follows)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")),
                platform.processor() or platform.machine())
    return f"{name} ({cpu_bf16()[1]})"


if __name__ == "__main__":
    main()
