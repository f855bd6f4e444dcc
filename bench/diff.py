"""The model diff at the demo preset: crosscoder training tokens/s, the whole diff's wall time, and where
the time goes (model forwards vs crosscoder vs naming).

Runs `saelab.demo.run_demo_diff` (fine-tune SmolLM2-135M on BBC sport once — reused when the
target exists — then the diff pipeline at `DEMO_DIFF`) into a fresh output directory next to the
target, and reads the pipeline's own per-stage timings (`timings.json`) and the crosscoder's
training record (`cfg.json` extra.training.tokens_per_s). The fine-tune is NOT counted in the
diff's wall time (it makes the pair; `finetune_config.json` has its own time).

    flock /tmp/saelab-cpu.lock .venv/bin/python bench/diff.py [--root /tmp/saelab-bench-diff] [--explainer auto]

`--from-demo WORKSPACE` reads the diff that a fresh `saelab demo` already ran (WORKSPACE/diff/run)
instead of running it again: its `timings.json` must show every stage as `ran` (a resumed stage
would hide its time), and the wall time is the sum of the stages.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from activations import ceiling_gflops, cpu_name  # bench/activations.py: this CPU's measured matmul peak
from saelab.demo import DEMO_DIFF, DEMO_LAYER, run_demo_diff

FORWARDS = ("activations", "sweep")


def crosscoder_flops_per_token(d_in: int, d_sae: int, n_models: int = 2) -> float:
    """Dense encoder + decoder matmuls, forward and backward (3 × 2 × 2 · n_models·d_in · d_sae); the AuxK
    pass and the elementwise work are left out, so the achieved GFLOP/s it gives is a lower bound."""
    return 3 * 2 * 2 * n_models * d_in * d_sae


def make_pair(root: Path) -> None:
    from saelab.finetune import DEMO_FINETUNE as p
    from saelab.finetune import finetune, load_slice

    finetune(p.model, load_slice(p.slice, seed=p.seed), root / "diff" / "target", steps=p.steps, lr=p.lr,
             batch_size=p.batch_size, ctx_len=p.ctx_len, seed=p.seed, layers_trainable=p.layers_trainable,
             precision=p.precision, progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/tmp/saelab-bench-diff", help="workspace root (the fine-tuned target is kept)")
    ap.add_argument("--explainer", default="auto", help="auto | top-tokens | qwen2.5-coder-1.5b | smollm2-135m")
    ap.add_argument("--from-demo", default=None, help="a workspace where `saelab demo` ran the diff fresh: read "
                    "its timings instead of running the diff again")
    ap.add_argument("--out", default=str(Path(__file__).with_name("diff.json")))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = replace(DEMO_DIFF, naming=replace(DEMO_DIFF.naming, explainer=args.explainer))
    if args.from_demo:
        root = Path(args.from_demo)
        run_dir = root / "diff" / "run"
        timings = json.loads((run_dir / "timings.json").read_text())
        not_ran = {k: v for k, v in timings["done"].items() if v != "ran"}
        if not_ran:
            raise SystemExit(f"--from-demo: {run_dir} did not run every stage fresh ({not_ran}); rerun the demo in a "
                             "new workspace or drop --from-demo")
        seconds, wall, source = timings["seconds"], sum(timings["seconds"].values()), "saelab demo (fresh workspace)"
    else:
        root = Path(args.root)
        shutil.rmtree(root / "diff" / "run", ignore_errors=True)  # time a whole diff, not a resumed one
        make_pair(root)  # timed on its own (finetune_config.json): not part of the diff's wall time
        t0 = time.perf_counter()
        result = run_demo_diff(root, print, config=config)  # reuses the pair made above
        wall = time.perf_counter() - t0
        run_dir, seconds, source = result.output_dir, result.seconds, "bench/diff.py"
    ft = json.loads((root / "diff" / "target" / "finetune_config.json").read_text())
    cc = json.loads((run_dir / "features" / f"layer_{DEMO_LAYER:02d}" / "crosscoder" / "cfg.json").read_text())
    training = cc["extra"]["training"]
    named = json.loads((run_dir / "features" / f"layer_{DEMO_LAYER:02d}" / "naming" / "named.json").read_text())
    s = seconds
    total = sum(s.values())
    parts = {"model forwards (activations + sweep)": sum(s[k] for k in FORWARDS),
             "crosscoder training": s["crosscoder"],
             "latent table (encode, store, stats)": s["features"], "naming": s["naming"],
             "plots + report": s["visualization"] + s["report"]}
    gflops = training["tokens_per_s"] * crosscoder_flops_per_token(cc["d_in"], cc["d_sae"]) / 1e9
    dtype = "float32"  # the crosscoder trains in float32 (Adam moments and the decoder-norm selection need it)
    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": cpu_name(),
        "torch_threads": torch.get_num_threads(), "layer": DEMO_LAYER,
        "config": {"n_tokens": config.n_tokens, "crosscoder": config.crosscoder.to_dict(),
                   "explainer": named["explainer"], "n_named": len(named["latents"])},
        "source": source, "finetune_seconds": ft["train_seconds"], "diff_wall_seconds": wall, "stage_seconds": s,
        "fractions": {k: v / total for k, v in parts.items()},
        "crosscoder_tokens_per_s": training["tokens_per_s"], "crosscoder_tokens": training["tokens"],
        "crosscoder_fvu_train": training["fvu"], "crosscoder_gflops": gflops,
        "ceiling_gflops": ceiling_gflops(dtype), "ceiling_dtype": dtype,
        "paired_tokens": json.loads((run_dir / "activations" / "manifest.json").read_text())["n_tokens"],
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print("\n| what | measured |\n| --- | --- |")
    print(f"| crosscoder training ({cc['d_sae']:,} latents, k={cc['k']}, d_in {cc['d_in']} × 2) | "
          f"**{training['tokens_per_s']:,.0f} tokens/s** over {training['tokens']:,} tokens; ≥ {gflops:.0f} GFLOP/s, "
          f"{100 * gflops / ceiling_gflops(dtype):.0f}% of the {dtype} ceiling ({ceiling_gflops(dtype):.0f}) |")
    print(f"| whole diff (fine-tuned pair given), explainer {named['explainer']} | **{wall:.0f} s** |")
    for k, v in parts.items():
        print(f"| {k} | {v:.0f} s ({100 * v / total:.0f}%) |")


if __name__ == "__main__":
    main()
