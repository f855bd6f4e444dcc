"""Evaluate the tiny fixtures (a subprocess of tests/evals/test_distributed.py; torchrun-able).

Usage: python dist_worker.py OUT_DIR
Writes OUT_DIR/metrics.json (rank 0): evaluate_many of an SAE, a dense PCA baseline fitted on the windows
before, and a transcoder; then run_eval and compare into OUT_DIR/ws. Run alone, or under torchrun with gloo.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from saelab.coders import CoderConfig, SparseCoder  # noqa: E402
from saelab.distributed import barrier, init_from_env, is_main  # noqa: E402
from saelab.evals import CoderReconstructor, EvalConfig, compare, evaluate_many, run_eval  # noqa: E402
from saelab.evals.run import fit_dense_baseline  # noqa: E402
from saelab.workspace import Workspace  # noqa: E402
from tests.latents.fixtures import tiny_coders, tiny_lm, tiny_windows  # noqa: E402

# 14 windows of 16 tokens: 5 for the CE/KL splice (batches 2, 2, 1), 9 streamed (2, 2, 2, 2, 1)
CONFIG = EvalConfig(n_tokens=14 * 16, ce_n_tokens=5 * 16, batch_size=2,
                    metrics=("reconstruction", "sparsity", "downstream"))


def main() -> None:
    torch.set_num_threads(1)
    init_from_env("cpu")
    out = Path(sys.argv[1])
    lm, windows, coders = tiny_lm(), tiny_windows(), tiny_coders()
    torch.manual_seed(1)
    transcoder = SparseCoder(CoderConfig("topk", d_in=32, d_sae=24, k=3, kind="transcoder", hookpoint="model.layers.1",
                                         out_hookpoint="model.layers.2"))
    sae = CoderReconstructor(coders["sae_l1"], "sae_l1")
    recs = [sae, CoderReconstructor(coders["sae_l2"], "sae_l2"), CoderReconstructor(transcoder, "tc"),
            fit_dense_baseline("dense:pca", sae, lm, windows, CONFIG, progress=False)]
    metrics = evaluate_many(recs, lm, windows, CONFIG, progress=False)
    ws = Workspace(out / "ws")
    if is_main():
        for name, coder in coders.items():
            coder.save(ws.dictionary(name))
    barrier()
    run_eval("sae_l1", ws, lm, windows, CONFIG, progress=False)
    compare("sae_l1", "dense:linear", ws, lm, windows, out / "ws" / "cmp", CONFIG, progress=False)
    if is_main():
        (out / "metrics.json").write_text(json.dumps([{k: v for k, v in m.items() if k != "seconds"}
                                                      for m in metrics]))


if __name__ == "__main__":
    main()
