"""Count co-occurrences of a synthetic workspace (a subprocess of tests/cooc/test_distributed.py; torchrun-able).

Usage: python dist_worker.py WORKSPACE
Writes cooc/<name> for each setting of SETTINGS (window level: non-overlapping and sliding; token level).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from saelab.cooc import CoocConfig, run  # noqa: E402
from saelab.distributed import init_from_env  # noqa: E402
from saelab.workspace import Workspace  # noqa: E402

SETTINGS = {"nonoverlap": CoocConfig(k=8, chunk_windows=3),
            "sliding": CoocConfig(k=12, window="sliding", stride=5, partial="keep", chunk_windows=4),
            "token": CoocConfig(level="token", chunk_windows=7)}


def main() -> None:
    torch.set_num_threads(1)
    init_from_env("cpu")
    ws = Workspace(Path(sys.argv[1]))
    for name, config in SETTINGS.items():
        run(config, ws, "synth", name=name)


if __name__ == "__main__":
    main()
