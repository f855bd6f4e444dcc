"""Report generation time and page sizes for a 16,384-latent dictionary with 500 latent pages.

The workspace is SYNTHETIC (no model run): token windows of random ids, a latent store from
`saelab.cooc.synthetic.zipf_entries` (L0 = 32 per token, topic + Zipf(1.1) latents), a random
TopK dictionary with unit decoder rows (d_in 576, SmolLM2's width), co-occurrence counts from
the real `saelab cooc` code, SFAL-like rows and auto-interp-like explanations for 500 latents
in those stages' on-disk layouts, and a random unembedding [49,152, 576] (SmolLM2's vocab) so
the logit effects cost what they cost on the real model. Only `saelab.report.run` is timed:
gathering artifacts, the table JSON for every latent, the plots, 500 latent pages.

    flock /tmp/saelab-cpu.lock .venv/bin/python bench/report.py [--d-sae 16384] [--pages 500] [--windows 256]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from saelab.coders import CoderConfig, SparseCoder
from saelab.cooc import run as cooc_run
from saelab.cooc.config import CoocConfig
from saelab.cooc.synthetic import write_workspace, zipf_entries
from saelab.report import ModelView, ReportConfig, run
from saelab.workspace import Workspace

log = logging.getLogger("bench.report")
D_IN, VOCAB, CTX = 576, 49152, 256


def build(root: Path, d_sae: int, n_windows: int, n_explained: int, seed: int = 0) -> Workspace:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, size=(n_windows, CTX))
    doc, entries = zipf_entries(n_windows, CTX, d_sae, l0=32, seed=seed)
    ws = write_workspace(root, tokens, doc, entries, d_sae, name="sae16k", shard_windows=64)
    torch.manual_seed(seed)
    SparseCoder(CoderConfig("topk", d_in=D_IN, d_sae=d_sae, k=32, hookpoint="model.layers.6")).save(
        ws.dictionary("sae16k"))
    cooc_run(CoocConfig(k=256), ws, "sae16k")
    _explanations(ws, rng.choice(d_sae, size=n_explained, replace=False), rng)
    return ws


def _explanations(ws: Workspace, latents: np.ndarray, rng: np.random.Generator) -> None:
    """interp/NAME/explanations/default/<latent>.json + per_latent.json; sfal/NAME/scores.csv + summary.json."""
    d = ws.root / "interp" / "sae16k"
    (d / "explanations" / "default").mkdir(parents=True)
    per = {"detection": {"explanation": {}}, "fuzz": {"explanation": {}}}
    for latent in latents.tolist():
        (d / "explanations" / "default" / f"{latent}.json").write_text(json.dumps(
            {"latent": latent, "explanation": f"synthetic explanation of latent {latent}", "failed": False}))
        for scorer in per:
            per[scorer]["explanation"][str(latent)] = {"auc": float(rng.uniform(0.4, 1.0))}
    (d / "per_latent.json").write_text(json.dumps(per))
    s = ws.root / "sfal" / "sae16k"
    s.mkdir(parents=True)
    with open(s / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["latent", "explanation_kind", "explanation", "window_count", "ndcg[m]", "ndcg_baseline[m]"])
        for latent in latents.tolist():
            w.writerow([latent, "synthetic", f"synthetic explanation of latent {latent}", 10, rng.uniform(), 0.4])
    (s / "summary.json").write_text(json.dumps({"aggregates": {"m": {"n_scored": len(latents), "ndcg_mean": 0.5,
                                                                     "ndcg_median": 0.5, "baseline_ndcg_mean": 0.4,
                                                                     "baseline_ndcg_sd": 0.01}}}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-sae", type=int, default=16384)
    p.add_argument("--pages", type=int, default=500)
    p.add_argument("--windows", type=int, default=256, help="token windows of 256 tokens in the synthetic store")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ws = build(Path(tmp) / "ws", args.d_sae, args.windows, n_explained=args.pages)
        t_build = time.perf_counter() - t0
        view = ModelView(lambda i: f"tok{i}", torch.randn(VOCAB, D_IN), "synthetic vocabulary")
        t0 = time.perf_counter()
        index = run(ReportConfig(max_latent_pages=args.pages), ws, Path(tmp) / "site", view)
        seconds = time.perf_counter() - t0
        site = index.parent
        latent_pages = sorted((site / "sae16k" / "latents").glob("*.html"))
        result = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.processor() or
            platform.machine(), "threads": args.threads, "d_sae": args.d_sae, "windows": args.windows,
            "tokens": args.windows * CTX, "latent_pages": len(latent_pages), "build_workspace_s": round(t_build, 1),
            "report_s": round(seconds, 2), "index_bytes": index.stat().st_size,
            "dictionary_page_bytes": (site / "sae16k" / "index.html").stat().st_size,
            "table_data_bytes": (site / "data" / "sae16k-latents.js").stat().st_size,
            "mean_latent_page_bytes": int(np.mean([p.stat().st_size for p in latent_pages])),
            "site_bytes": sum(p.stat().st_size for p in site.rglob("*") if p.is_file()),
        }
    log.info(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
