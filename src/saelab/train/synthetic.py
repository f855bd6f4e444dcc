"""Training on synthetic activations with known features (`saelab train --synthetic DIR`).

A synthetic model (`saelab.synth`: feature vectors, firing probabilities, hierarchy, correlations;
SAELens's on-disk layout) stands in for the language model: step i of a run samples `batch_size`
activations from a generator seeded by (seed, i), so a run is a pure function of its seed and
resumes at any step with nothing saved but the weights. The dictionaries' hookpoint is `synthetic`;
their cfg.json records the synthetic model's directory and hash, which `saelab eval --ground-truth`
reads back to score the decoder against the true features.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from .._io import sha256_file
from ..distributed import LOCAL, Local, rank_and_world
from ..errors import ConfigError
from ..workspace import Workspace
from .checkpoint import config_fingerprint
from .config import TrainConfig
from .parallel import Parallel, batch_ranks, rank_dictionaries
from .run import build_trainers, locked_run, run_directory, save_run_dictionaries, train
from .trainer import DictionaryTrainer

SYNTHETIC_HOOKPOINT = "synthetic"
"""The one hookpoint of a synthetic run: its dictionaries read and reconstruct the sampled activations."""
STEPS_PER_CHUNK = 64
"""Steps between the loop's chunk boundaries (nothing is read per chunk: a chunk only groups steps)."""
HELDOUT_SEED = 2**31 - 1
"""Held-out samples are drawn with this seed offset: no training step draws them."""


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of one training step's samples: (seed, step) alone decide them."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


class SynthSource:
    """Training batches sampled from a synthetic model: `total_steps` steps of `batch_rows` samples.

    Example:
        >>> src = SynthSource(model, batch_rows=1024, seed=0, n_samples=1_000_000)
        >>> for batch in src.steps(chunk=0):      # {"synthetic": [1024, hidden_dim]}
        ...     ...
    """

    def __init__(self, model: Any, batch_rows: int, seed: int, n_samples: int, ranks: Local = LOCAL):
        self.model, self.batch_rows, self.seed = model, batch_rows, seed
        self.ranks = ranks
        self.total_steps = max(1, math.ceil(n_samples / batch_rows))

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.total_steps / STEPS_PER_CHUNK)

    def steps_in_chunk(self, chunk: int) -> int:
        return min(STEPS_PER_CHUNK, self.total_steps - chunk * STEPS_PER_CHUNK)

    def chunk_tokens(self, chunk: int) -> int:
        return self.steps_in_chunk(chunk) * self.batch_rows

    @property
    def total_tokens(self) -> int:
        return self.total_steps * self.batch_rows

    def steps(self, chunk: int, start: int = 0) -> Iterator[dict[str, Tensor]]:
        for i in range(start, self.steps_in_chunk(chunk)):
            hidden, _ = self.model.sample(self.batch_rows, generator=step_generator(self.seed,
                                                                                     chunk * STEPS_PER_CHUNK + i))
            # data parallel: every rank draws the whole step (its samples come from one generator) and keeps its
            # rows, so the ranks train on the one-process batch; sampling is not sped up, the steps are
            yield {SYNTHETIC_HOOKPOINT: hidden[self.ranks.rank::self.ranks.world] if self.ranks.world > 1 else hidden}


def synthetic_hash(path: str | Path) -> str | None:
    """sha256 of a synthetic model directory's weights file: which world a dictionary was trained or scored on."""
    weights = sorted(Path(path).glob("*.safetensors"))
    return sha256_file(weights[0]) if weights else None


def synthetic_identity(path: Path, model: Any) -> dict[str, Any]:
    """What a synthetic run trained on: the model's directory, config and weights' hash (cfg.json, fingerprint)."""
    return {"synthetic_model": str(path.resolve()), "synthetic_config": model.cfg.to_dict(),
            "synthetic_hash": synthetic_hash(path)}


def check_synthetic_config(config: TrainConfig) -> None:
    """A synthetic run's dictionaries are SAEs of the `synthetic` hookpoint; one pass of fresh samples."""
    for spec in config.dictionaries:
        if spec.hookpoint != SYNTHETIC_HOOKPOINT or spec.is_transcoder:
            raise ConfigError(f"hookpoint: got {spec.hookpoint!r} (out {spec.out_hookpoint!r}) for {spec.name}; a "
                              f"synthetic run trains SAEs of the {SYNTHETIC_HOOKPOINT!r} hookpoint only (drop "
                              "--hookpoint and --transcode-to).")
    if config.buffered:
        raise ConfigError("epochs / steps: a synthetic run draws fresh samples every step (no buffer to reread); "
                          "set the budget with n_tokens (samples) instead.")


def check_not_planted(trainers: dict[str, DictionaryTrainer], model: Any) -> None:
    """Refuse a run whose initial decoder already is the true dictionary: the synthetic model and the trainer
    draw their random matrices from torch generators, and the same seed and shape give the same matrix
    (seed 0 for both, d_sae = num_features), which would make recovery a copy, not a result."""
    truth = torch.nn.functional.normalize(model.feature_vectors.float(), dim=1)  # [F, d]
    for name, t in trainers.items():
        rows = torch.nn.functional.normalize(t.coder.W_dec.detach().float().cpu(), dim=1)  # [d_sae, d]
        best = (rows @ truth.T).abs().amax(dim=1)  # [d_sae]
        if float(best.median()) > 0.99:
            raise ConfigError(f"seed: {name}'s initial decoder already equals the synthetic model's features (median "
                              f"|cos| {float(best.median()):.3f}: the same seed and shape draw the same matrix); "
                              "train with another --seed, or make the synthetic model with another seed.")


def run_synthetic(config: TrainConfig, workspace: Workspace, model: Any, path: str | Path, *,
                  run_name: str | None = None, resume: bool | None = None, progress: bool = True,
                  heldout_samples: int = 8192, until_step: int | None = None,
                  parallel: Parallel = "data") -> list[Path]:
    """Train `config`'s dictionaries on samples of the synthetic model at `path`; return their directories.

    `config.n_tokens` is the number of training samples and `config.batch_size` the samples per step
    (each sample is one "token"); `heldout_samples` (seeded apart from every step) give the held-out FVU.
    resume / until_step / parallel: as `train.run` (data parallel: every rank draws each step's samples and
    trains on its rows of them).

    Example:
        >>> spec = DictionarySpec("synth-topk", "synthetic", d_sae=4096, k=25)
        >>> run_synthetic(TrainConfig((spec,), n_tokens=2_000_000, batch_size=1024), ws, load_synth_model(p), p)
    """
    check_synthetic_config(config)
    rank_dictionaries(config, parallel, *rank_and_world())  # more ranks than dictionaries: refused before any lock
    path = Path(path)
    identity = synthetic_identity(path, model)
    widths = {SYNTHETIC_HOOKPOINT: int(model.feature_vectors.shape[1])}
    canonical = {SYNTHETIC_HOOKPOINT: SYNTHETIC_HOOKPOINT}
    source = SynthSource(model, config.batch_size, config.seed, config.n_tokens, batch_ranks(parallel))
    check_not_planted(build_trainers(config, widths, canonical, "", 1), model)  # the initial weights, drawn afresh
    heldout = None
    if heldout_samples > 0:
        held, _ = model.sample(heldout_samples, generator=step_generator(config.seed + HELDOUT_SEED, 0))
        heldout = {SYNTHETIC_HOOKPOINT: held}
    run_dir = run_directory(workspace, config, run_name)
    fingerprint = config_fingerprint({"config": asdict(config), **identity})
    with locked_run(workspace, config, run_dir, fingerprint, resume, parallel) as resume:
        trainers, state = train(config, None, canonical, widths, (0, 0), run_dir, ctx_len=1,
                                fingerprint_extra=identity, model=f"synthetic:{path.resolve()}", resume=resume,
                                progress=progress, until_step=until_step, source=source, heldout=heldout,
                                parallel=parallel)
        if state.step < source.total_steps:
            return []
        provenance = {**identity, "heldout_samples": heldout_samples, "samples_per_step": config.batch_size}
        return save_run_dictionaries(trainers, workspace, config, state, provenance, run_dir, parallel)
