"""The training loop: one activation stream feeds every dictionary of a run.

    for each chunk of windows (one model pass over them), or each epoch over an activation buffer:
        for each shuffled step of the chunk:
            every trainer takes one optimiser step on the same tokens
            now and then: held-out FVU, decoder movement
            log (JSONL), progress bar, checkpoint
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from torch import Tensor

from ..progress import token_progress
from .checkpoint import RunState, save_checkpoint
from .source import BufferSource, ChunkedSource, total_rows
from .trainer import DictionaryTrainer

log = logging.getLogger(__name__)

LOG_NAME = "log.jsonl"

Source = ChunkedSource | BufferSource


@dataclass(frozen=True)
class RunFiles:
    """Where one process writes a run's checkpoint and JSONL log; `world` and `parallel`: the run's ranks and how
    they share the work, which the checkpoint records. Under data parallel rank 0 writes for every rank (the
    others get None); with the dictionaries spread over ranks each writes its own (`distributed.rank_file`)."""

    checkpoint: Path
    log: Path
    world: int = 1
    parallel: str = "data"


class JsonlLog:
    """Append-only JSONL log of a run; on resume, lines after the checkpoint's step are dropped
    so the log reads as one uninterrupted run."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step is not None and path.exists():
            kept = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= resume_step]
        path.write_text("".join(ln + "\n" for ln in kept))

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


@contextmanager
def train_progress(total_tokens: int, done_tokens: int, enabled: bool,
                   steps: tuple[int, int] | None = None) -> Iterator[Callable[[int, str], None]]:
    """Progress over the run's tokens (`done_tokens` of them resumed from a checkpoint: out of the rate) with the
    step and a metrics text beside it; yields update(n, text) for each step. `steps`: (done, total) steps."""
    with token_progress(total_tokens, "train", enabled, done=done_tokens) as advance:
        step, n_steps = steps or (0, 0)

        def update(n: int, text: str) -> None:
            nonlocal step
            step += 1
            advance(n, f"step {step:,}/{n_steps:,}  {text}" if n_steps else text)

        yield update


def _metrics_text(metrics: dict[str, dict[str, float]]) -> str:
    return "  ".join(f"{name}: FVU {m['fvu']:.3f} L0 {m['l0']:.0f} dead {m['dead_fraction']:.1%}"
                     + (f" held-out {m['heldout_fvu']:.3f}" if "heldout_fvu" in m else "")
                     for name, m in metrics.items())


def fit(trainers: dict[str, DictionaryTrainer], io: dict[str, tuple[str, str]], source: Source,
        state: RunState, files: RunFiles | None, *, checkpoint_every: int, log_every: int, fingerprint: str,
        progress: bool = True, until_step: int | None = None, heldout: dict[str, Tensor] | None = None,
        eval_every: int = 0) -> RunState:
    """Train every trainer from `state` to the end of `source` (or until `until_step`).

    io maps a dictionary name to (input hookpoint, target hookpoint) in the source's batches.
    Checkpoints go to `files.checkpoint` every `checkpoint_every` steps and at the end, log lines to
    `files.log`; None: this rank writes nothing (a data-parallel rank other than 0).
    heldout: {hookpoint: [n, d]} activations no step trains on; every `eval_every` steps (and at the
    end) each dictionary's FVU on them and its decoder's movement from the initialisation are logged.
    """
    jsonl = JsonlLog(files.log, resume_step=state.step if state.step else None) if files is not None else None
    t0, tokens_at_t0 = time.perf_counter(), state.window_tokens
    total_steps = source.total_steps
    with train_progress(source.total_tokens, state.window_tokens, progress, (state.step, total_steps)) as update:
        while state.chunk < source.n_chunks:
            chunk, n_steps = state.chunk, source.steps_in_chunk(state.chunk)
            chunk_tokens = source.chunk_tokens(chunk)
            for batch in source.steps(chunk, state.step_in_chunk):
                metrics = {name: t.step(batch[io[name][0]], batch[io[name][1]]) for name, t in trainers.items()}
                n_text = total_rows(source.ranks, batch)
                # window tokens of this step: the chunk's tokens shared out, the remainder on its last step
                last = state.step_in_chunk == n_steps - 1
                step_tokens = chunk_tokens // n_steps + (chunk_tokens % n_steps if last else 0)
                state.advance(n_steps, step_tokens, n_text)
                evaluate = heldout is not None and eval_every > 0 and (state.step % eval_every == 0
                                                                        or state.step == total_steps)
                if evaluate:
                    for name, t in trainers.items():
                        metrics[name].update(t.heldout_metrics(heldout[io[name][0]], heldout[io[name][1]]))
                update(step_tokens, _metrics_text(metrics))
                if jsonl is not None and (evaluate or state.step % log_every == 0 or state.step == total_steps):
                    rate = (state.window_tokens - tokens_at_t0) / max(time.perf_counter() - t0, 1e-9)
                    for name, m in metrics.items():
                        jsonl.write({"dictionary": name, "step": state.step, "tokens": state.window_tokens,
                                     "text_tokens": state.text_tokens, **m, "tokens_per_s": rate})
                if files is not None and checkpoint_every and state.step % checkpoint_every == 0:
                    save_checkpoint(files.checkpoint, state, trainers, fingerprint, files.world, files.parallel)
                if until_step is not None and state.step >= until_step:
                    return state
    if files is not None:
        save_checkpoint(files.checkpoint, state, trainers, fingerprint, files.world, files.parallel)
    return state
