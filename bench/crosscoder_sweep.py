"""The sweep behind the demo crosscoder's rate: does the crosscoder leave the middle?

    flock /tmp/saelab-cpu.lock .venv/bin/python bench/crosscoder_sweep.py WORKSPACE/diff/run \\
        --lr-scale 1 4 16 --out bench/crosscoder_sweep.json

Reads the paired activations of a finished demo diff (SmolLM2-135M-Instruct vs its BBC-sport fine-tune,
layer 15) and trains the demo's crosscoder (`DEMO_DIFF`: 2,048 latents, BatchTopK k 32, 262,144 tokens in
batches of 1,024, tied init) at each rate multiplier × saelab's default rate, with the same held-out windows
as the diff. Records the held-out FVU per model, the decoder rows' median cosine to their initialisation,
and the spread of Δnorm over the latents that fire (`diff.latent_stats.delta_norm_spread`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from saelab.activations.paired import PairedActivations
from saelab.demo import DEMO_DIFF, DEMO_LAYER
from saelab.diff.features import heldout_rows, heldout_windows
from saelab.diff.latent_stats import delta_norm, delta_norm_spread
from saelab.train.config import default_lr
from saelab.train.crosscoder import train_crosscoder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("diff_run", type=Path, help="a finished diff run (holds activations/)")
    p.add_argument("--lr-scale", type=float, nargs="+", default=[1.0, 4.0, 16.0])
    p.add_argument("--n-tokens", type=int, nargs="+", default=[DEMO_DIFF.crosscoder.n_tokens],
                   help="training tokens (each with every --lr-scale)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    acts = PairedActivations(args.diff_run / "activations")
    held = heldout_windows(acts, DEMO_DIFF.heldout_fraction)
    import torch

    heldout = heldout_rows(acts, DEMO_LAYER, held)
    results = []
    for n_tokens, scale in [(n, s) for n in args.n_tokens for s in args.lr_scale]:
        cc = dataclasses.replace(DEMO_DIFF.crosscoder, lr=scale * default_lr(DEMO_DIFF.crosscoder.d_sae),
                                 n_tokens=n_tokens)
        t0 = time.perf_counter()
        coder = train_crosscoder(lambda cc=cc: acts.training_batches(DEMO_LAYER, cc.batch_size, DEMO_DIFF.seed, held),
                                 cc, d_in=acts.d_model, hookpoint=f"resid_post.{DEMO_LAYER}", progress=False,
                                 heldout=heldout)
        seconds = time.perf_counter() - t0
        t = coder.cfg.extra["training"]
        with torch.no_grad():
            fired = (coder.encode(heldout) > 0).any(0)
        spread = delta_norm_spread(delta_norm(coder)[fired].numpy())
        rec = {"lr_scale": scale, "lr": cc.lr, "n_tokens": n_tokens, "steps": cc.total_steps, "seconds": seconds,
               "heldout_fvu_base": t.get("heldout_fvu_base"),
               "heldout_fvu_target": t.get("heldout_fvu_target"), "decoder_cos_init": t.get("decoder_cos_init"),
               "dead_fraction": t.get("dead_fraction"), "n_fired_heldout": int(fired.sum()), "delta_norm": spread}
        results.append(rec)
        print(json.dumps(rec), flush=True)
    if args.out:
        if args.out.exists():  # a sweep in several runs: earlier results are kept
            results = json.loads(args.out.read_text())["results"] + results
        args.out.write_text(json.dumps({"diff_run": str(args.diff_run), "heldout_tokens": int(heldout.shape[0]),
                                        "results": results}, indent=1))


if __name__ == "__main__":
    main()
