"""Run the diff pipeline on the tiny pair (a subprocess of the tests; torchrun-able).

Usage: python worker_pipeline.py OUT CORPUS
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from saelab.diff.pipeline import run_feature_interpretation_pipeline  # noqa: E402
from saelab.distributed import init_from_env  # noqa: E402
from tests.diff._pair import CHANGED_LAYER, fast_config, tiny_pair  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    init_from_env("cpu")
    out, corpus = Path(sys.argv[1]), Path(sys.argv[2])
    # float32 selection: a bf16 product rounds differently on half the rows, which flips BatchTopK's
    # choice at near-ties, so only the float32 run is comparable to rounding
    config = fast_config(corpus, n_sweep_windows=4)
    config = replace(config, crosscoder=replace(config.crosscoder, encoder_dtype="float32"))
    run_feature_interpretation_pipeline(*tiny_pair(), out, layers=[CHANGED_LAYER], config=config, progress=False)


if __name__ == "__main__":
    main()
