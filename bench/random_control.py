"""The pre-registered random-model control (bench/interp_random_control_prereg.md): the demo's `full` SAE and
the same recipe on `random:smollm2-135m@0`, both explained by the demo's explainer on 300 latents and scored by
the embedding scorer; then the comparison.

    python bench/random_control.py --real /tmp/prereg/real --control /tmp/prereg/control

`--real` is a demo workspace (its tokens, dictionaries/full and latents/full are read); `--control` is created
with the real one's token windows. Every step resumes: rerun after an interruption.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

from saelab.demo import DemoConfig, stage_cache, stage_train
from saelab.interp.config import ExampleConfig, demo_preset
from saelab.interp.control import compare_runs, write_control
from saelab.interp.run import run as interp_run
from saelab.models.load import load_model
from saelab.workspace import Workspace

RUN = "full300"
CONTROL_MODEL = "random:smollm2-135m@0"


def interp_config():
    """The pre-registered config: the demo preset's explainer, embedding only, 25 + 25 test examples, 300 latents."""
    base = demo_preset(max_latents=300)
    examples = dataclasses.replace(base.examples, n_examples_test=25, n_non_activating=25, seed=22)
    assert isinstance(examples, ExampleConfig)
    return dataclasses.replace(base, examples=examples, scorers=("embedding",))


def prepare_control(real: Path, control: Path, emit) -> None:
    """The control workspace: the real one's token windows, then the demo's train and cache stages on the random
    model (only `full`)."""
    control.mkdir(parents=True, exist_ok=True)
    if not (control / "tokens" / "cfg.json").exists():
        shutil.copytree(real / "tokens", control / "tokens")
    from saelab.data.tokens import load_token_windows

    ws = Workspace.at(control)
    cfg = DemoConfig(model=CONTROL_MODEL, widths={"full": 2048})
    lm = load_model(CONTROL_MODEL, dtype=cfg.dtype)
    windows = load_token_windows(ws.tokens)
    t0 = time.perf_counter()
    stage_train(cfg, ws, lm, windows, emit)
    stage_cache(cfg, ws, lm, windows, emit)
    emit(f"control train + cache: {time.perf_counter() - t0:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, required=True)
    ap.add_argument("--control", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("bench/interp_random_control.json"))
    args = ap.parse_args()
    emit = print
    prepare_control(args.real, args.control, emit)
    config = interp_config()
    seconds = {}
    for side, root in (("real", args.real), ("control", args.control)):
        t0 = time.perf_counter()
        out = interp_run(config, Workspace.at(root), "full", name=RUN)
        seconds[side] = time.perf_counter() - t0
        emit(f"{side}: {out} ({seconds[side]:.0f} s)")
    real_run, control_run = Workspace.at(args.real).interp(RUN), Workspace.at(args.control).interp(RUN)
    comparison = compare_runs(real_run, control_run, seed=22)
    write_control(real_run, comparison)
    args.out.write_text(json.dumps({"comparison": comparison, "seconds": seconds,
                                    "interp_config": dataclasses.asdict(config)}, indent=1, default=str))
    emit((real_run / "summary.md").read_text())


if __name__ == "__main__":
    main()
