"""A real diff run inside a workspace (`WORKSPACE/diff/run`, where the demo writes its own): the tiny
model pair of tests/diff, the whole pipeline with top-tokens naming (no LLM). One category is named
with HTML that must not run."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from saelab.diff.pipeline import run_feature_interpretation_pipeline
from tests.conftest import WORDS, corpus_file
from tests.diff._pair import CHANGED_LAYER, fast_config, tiny_pair

from .workspace import SCRIPT

LAYER = CHANGED_LAYER
RUN = "run"


def _prompts(start: int, n: int = 4) -> list[str]:
    return [" ".join(WORDS[(start + 3 * i + j) % len(WORDS)] for j in range(12)) for i in range(n)]


def add_diff_run(root: Path) -> Path:
    """Run the diff pipeline into `root/diff/run`; its settings in `cfg.json` (the current name)."""
    inputs = root / "diff" / "inputs"  # beside the run, as the demo keeps its categories.json: not a run itself
    inputs.mkdir(parents=True, exist_ok=True)
    cats = inputs / "categories.json"
    cats.write_text(json.dumps({"plain": _prompts(0), SCRIPT: _prompts(7)}), encoding="utf-8")
    out = root / "diff" / RUN
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second OpenMP thread only spins on a busy machine
    try:
        run_feature_interpretation_pipeline(*tiny_pair(), out, layers=[LAYER], progress=False,
                                            config=fast_config(corpus_file(inputs), categories=str(cats)))
    finally:
        torch.set_num_threads(threads)
    if not (out / "cfg.json").exists():  # a pipeline from before the rename wrote run_config.json
        (out / "run_config.json").rename(out / "cfg.json")
    return out


def to_old_format(run_dir: Path) -> None:
    """Make `run_dir` look like a run from before the rename: its settings in run_config.json only."""
    (run_dir / "cfg.json").rename(run_dir / "run_config.json")
