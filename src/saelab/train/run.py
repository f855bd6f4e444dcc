"""The `train` stage: token windows → activations → dictionaries in `workspace/dictionaries/`.

A run's checkpoint and JSONL log live in `workspace/train/RUN/`; each dictionary is saved
in saelab's native format with a cfg.json that records how it was trained.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..data.tokens import TokenWindows
from ..errors import ConfigError
from ..models.hookpoints import resolve_hookpoint
from ..models.load import LoadedModel
from ..workspace import Workspace
from .checkpoint import CHECKPOINT_NAME, RunState, config_fingerprint, load_checkpoint
from .config import TrainConfig
from .loop import LOG_NAME, fit
from .source import ChunkedSource, ReadWindows, model_reader
from .trainer import DictionaryTrainer, coder_config

log = logging.getLogger(__name__)


def window_range(config: TrainConfig, windows: TokenWindows) -> tuple[int, int]:
    """Windows [first, stop) that cover `config.n_tokens` tokens from `config.first_window`."""
    stop = config.first_window + math.ceil(config.n_tokens / windows.ctx_len)
    if stop > windows.n_windows:
        have = (windows.n_windows - config.first_window) * windows.ctx_len
        raise ConfigError(
            f"n_tokens: got {config.n_tokens:,}, but the workspace's windows hold {max(have, 0):,} tokens from window "
            f"{config.first_window}; lower n_tokens, or rebuild the windows with a larger budget "
            "(`saelab tokens --n-tokens N --overwrite`, or a new --workspace)."
        )
    return config.first_window, stop


def build_trainers(config: TrainConfig, widths: dict[str, int], canonical: dict[str, str], model: str,
                   total_steps: int, device: torch.device | str = "cpu") -> dict[str, DictionaryTrainer]:
    """One DictionaryTrainer per DictionarySpec; widths maps canonical hookpoints to d."""
    trainers = {}
    for i, spec in enumerate(config.dictionaries):
        hp, out_hp = canonical[spec.hookpoint], canonical.get(spec.out_hookpoint or spec.hookpoint)
        cfg = coder_config(spec, widths[hp], widths[out_hp], hp, out_hp if spec.is_transcoder else None, model)
        trainers[spec.name] = DictionaryTrainer(spec, cfg, config, total_steps, device=device, seed=config.seed + i)
    return trainers


def train(config: TrainConfig, read: ReadWindows, canonical: dict[str, str], widths: dict[str, int],
          windows_range: tuple[int, int], run_dir: Path, *, ctx_len: int, fingerprint_extra: dict[str, Any],
          model: str = "", resume: bool = False, progress: bool = True, until_step: int | None = None,
          device: torch.device | str = "cpu") -> tuple[dict[str, DictionaryTrainer], RunState]:
    """Train the run's dictionaries from any window reader (the model, or tensors in tests)."""
    source = ChunkedSource(read, *windows_range, config.batch_size, config.shuffle_windows, config.seed)
    trainers = build_trainers(config, widths, canonical, model, source.total_steps, device)
    fingerprint = config_fingerprint({"config": asdict(config), **fingerprint_extra})
    state = load_checkpoint(run_dir / CHECKPOINT_NAME, trainers, fingerprint) if resume else RunState()
    if resume:
        log.info("resuming %s at step %d of %d", run_dir, state.step, source.total_steps)
    io = {s.name: (canonical[s.hookpoint], canonical[s.out_hookpoint or s.hookpoint]) for s in config.dictionaries}
    state = fit(trainers, io, source, state, run_dir, checkpoint_every=config.checkpoint_every,
                log_every=config.log_every, fingerprint=fingerprint, ctx_len=ctx_len, progress=progress,
                until_step=until_step)
    return trainers, state


def save_dictionaries(trainers: dict[str, DictionaryTrainer], workspace: Workspace, config: TrainConfig,
                      state: RunState, provenance: dict[str, Any], run_dir: Path) -> list[Path]:
    """Save every trained dictionary with its training record in cfg.json (under `extra.training`)."""
    paths = []
    run_log = ([ln for ln in (run_dir / LOG_NAME).read_text().splitlines() if ln] if (run_dir / LOG_NAME).exists()
               else [])
    for spec in config.dictionaries:
        trainer = trainers[spec.name]
        record = {"train_config": asdict(config), "dictionary": asdict(spec), "lr": trainer.base_lr,
                  "lr_warmup_steps": trainer.warmup, "tokens_seen": state.window_tokens,
                  "text_tokens_seen": state.text_tokens, "steps": state.step, "run_dir": str(run_dir),
                  "final": trainer.summary(), **provenance}
        coder = trainer.coder
        coder.cfg = dataclasses.replace(coder.cfg, extra={**coder.cfg.extra, "training": record})
        path = coder.save(workspace.dictionary(spec.name))
        mine = [ln for ln in run_log if json.loads(ln)["dictionary"] == spec.name]
        (path / "train_log.jsonl").write_text("".join(ln + "\n" for ln in mine))
        paths.append(path)
        log.info("saved %s (%s)", path, trainer.summary())
    return paths


def run(config: TrainConfig, workspace: Workspace, lm: LoadedModel, windows: TokenWindows, *,
        run_name: str | None = None, resume: bool = False, progress: bool = True,
        until_step: int | None = None) -> list[Path]:
    """Train the dictionaries of `config` from one activation stream; return their directories.

    Example:
        >>> spec = DictionarySpec("sae-4k", "resid_post.6", d_sae=4096, k=32)
        >>> run(TrainConfig((spec,), n_tokens=200_000), Workspace.at("ws"), lm, windows)
        [PosixPath('ws/dictionaries/sae-4k')]
    """
    canonical = {hp: resolve_hookpoint(lm.model, hp).name for hp in config.hookpoints}
    hookpoints = list(dict.fromkeys(canonical.values()))
    read = model_reader(lm, windows, hookpoints, config.batch_size)
    first, stop = window_range(config, windows)
    probe, _ = read(first, first + 1)  # one window, to learn every hookpoint's width
    widths = {hp: int(a.shape[-1]) for hp, a in probe.items()}
    run_dir = workspace.root / "train" / (run_name or config.dictionaries[0].name)
    provenance = {"model": lm.describe(), "tokens_hash": windows.tokens_hash, "windows": [first, stop],
                  "ctx_len": windows.ctx_len, "excluded_positions": list(windows.config.exclude),
                  "excluded_positions_note": "sink = position 0 of every window; special = special-token ids"}
    trainers, state = train(config, read, canonical, widths, (first, stop), run_dir, ctx_len=windows.ctx_len,
                            fingerprint_extra={"tokens_hash": windows.tokens_hash, "model": lm.spec},
                            model=lm.spec, resume=resume, progress=progress, until_step=until_step,
                            device=lm.device)
    if state.step < next(iter(trainers.values())).total_steps:
        return []  # interrupted on purpose; resume with resume=True
    return save_dictionaries(trainers, workspace, config, state, provenance, run_dir)


__all__ = ["build_trainers", "run", "save_dictionaries", "train", "window_range"]
