"""Auto-interpretation: log-prob detection vs generate-and-parse detection, same model, same prompts.

Reads an existing `saelab autointerp` run (its examples and its explainer's explanations) and
asks the in-process model every detection question twice:
- log-prob: one forward per prompt (batched), P(yes) at the first answer position (saelab's way);
- generate-and-parse: greedy generation of a few tokens, then "yes"/"no" parsed from the text
  (what a client without log-probs, such as delphi's through OpenRouter, has to do).
Reports examples/s of each, their agreement, F1 of each, the log-prob AUC, and unparseable answers.
Also: seconds per latent of the run it reads (explain, then each scorer × explanation variant), from the
`timings.json` that every `saelab autointerp` run writes.

    flock /tmp/saelab-cpu.lock .venv/bin/python bench/interp.py --workspace /tmp/wsi --run smollm2-20 \
        --explainer_model smollm2-135m --n_latents 10
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--run", required=True, help="interp run name (workspace/interp/NAME)")
    ap.add_argument("--explainer_model", default="smollm2-135m")
    ap.add_argument("--n_latents", type=int, default=10)
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--out", default="bench/interp.json")
    args = ap.parse_args()

    from saelab._io import read_json
    from saelab.interp.clients import TransformersClient
    from saelab.interp.examples import LatentExamples
    from saelab.interp.explainer_model import load_explainer
    from saelab.interp.format import token_decoder
    from saelab.interp.metrics import classification
    from saelab.interp.run import load_subject_tokenizer
    from saelab.interp.scorers import Detection, record
    from saelab.latents.store import LatentStore
    from saelab.workspace import Workspace

    torch.set_num_threads(2)
    ws = Workspace.at(args.workspace)
    run_dir = ws.root / "interp" / args.run
    cfg = read_json(run_dir / "run_config.json")
    tokenizer = load_subject_tokenizer(LatentStore(cfg["store"]))
    decode = token_decoder(tokenizer)
    explainer = cfg["config"]["explainer"]
    scorer, prompts, items = Detection(), [], []
    for path in sorted((run_dir / "explanations" / explainer).glob("*.json"), key=lambda p: int(p.stem)):
        e = read_json(path)
        if e["failed"] or len(items) and len({i[0] for i in items}) >= args.n_latents:
            continue
        ex = LatentExamples.from_dict(read_json(run_dir / "examples" / f"{e['latent']}.json"))
        for it in scorer.items(ex, np.random.default_rng(0)):
            items.append((e["latent"], it))
            prompts.append(scorer.prompt(e["explanation"], it, decode))
    client = TransformersClient(load_explainer(args.explainer_model, "auto"), args.batch_size)
    client.judge(prompts[: args.batch_size])  # warm-up
    t0 = time.perf_counter()
    lp = [record(it, a) for (_, it), a in zip(items, client.judge(prompts))]
    t_lp = time.perf_counter() - t0
    t0 = time.perf_counter()
    gen = [record(it, a) for (_, it), a in zip(items, client.generate(prompts, max_tokens=3))]
    t_gen = time.perf_counter() - t0
    both = [(a, b) for a, b in zip(lp, gen) if not a["failed"] and not b["failed"]]
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.processor(),
        "threads": torch.get_num_threads(), "model": args.explainer_model, "run": args.run,
        "n_latents": len({l for l, _ in items}), "n_examples": len(items),
        "logprob": {"seconds": round(t_lp, 2), "examples_per_s": round(len(items) / t_lp, 2), **classification(lp)},
        "generate": {"seconds": round(t_gen, 2), "examples_per_s": round(len(items) / t_gen, 2),
                     **classification(gen)},
        "agreement": round(float(np.mean([a["prediction"] == b["prediction"] for a, b in both])), 4) if both else None,
        "mean_p_yes": round(float(np.mean([r["probability"] for r in lp if r["probability"] is not None])), 4),
        "run_seconds_per_latent": {k: v["seconds"] / v["n_latents"] for k, v in (
            read_json(run_dir / "timings.json").items() if (run_dir / "timings.json").exists() else [])},
        "run_judge": cfg["config"]["explainer_model"],
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
