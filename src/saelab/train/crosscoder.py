"""Train a BatchTopK crosscoder on paired (base, target) activations at the same tokens.

One latent space, one decoder per model: latent j writes d_j^base into the base model and
d_j^target into the target model. What makes it a model-diffing crosscoder:

- Selection score f_j(t) · Σ_m ‖d_j^m‖ (Lindsey et al. 2024 count sparsity with the summed
  per-model decoder norms); BatchTopK keeps the k·N largest scores of a batch. Minder et al.
  2025 (arXiv 2504.02922) show that an L1 penalty creates false "target-only" latents
  (complete shrinkage, latent decoupling) and that BatchTopK mostly avoids them.
- Decoder rows are free (never renormalised): Δnorm compares ‖d_j^base‖ with ‖d_j^target‖.
- Each model's activations are divided by a scalar (their RMS distance to the mean on the
  first batch), so a model with larger norms neither dominates the encoder nor shifts every
  latent's Δnorm; the loss is the FVU of each model summed.
- The encoder reads x − b_dec (b_dec starts at each model's mean): without centering, the
  models' mean offsets push random latents on or off early and some concepts are never
  learned (seen on synthetic pairs with planted offsets).

The saved coder works on raw activations: both scalings are folded into its weights (see
`_fold`), `cfg.extra["activation_scales"]` keeps the per-model scalars, and
`SparseCoder.encode` with the learned threshold reproduces the training selection.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import Tensor

from ..coders import CoderConfig, SparseCoder
from ..distributed import LOCAL, Local, barrier, data_parallel
from ..errors import ArtifactError, ConfigError, FormatError
from ..models.load import parse_dtype
from .checkpoint import (
    CHECKPOINT_NAME,
    RunState,
    check_world_size,
    config_fingerprint,
    fingerprint_difference,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from .config import CrosscoderConfig
from .loop import JsonlLog, train_progress
from .objective import StepLoss, code_norms, crosscoder_objective, total_variance
from .reference import dense_crosscoder_objective
from .trainer import Trainer, weighted_mean

log = logging.getLogger(__name__)

SOURCES = ("base", "target")

Batches = Iterable[Tensor] | Callable[[], Iterable[Tensor]]


class CrosscoderTrainer(Trainer):
    """One crosscoder: the shared `Trainer` plus per-model activation scales, tied shared latents and the
    score-based BatchTopK selection."""

    def __init__(self, config: CrosscoderConfig, cfg: CoderConfig, device: torch.device, reference: bool = False,
                 ranks: Local = LOCAL):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # the initial weights depend only on the seed
            coder = SparseCoder(cfg, dtype=torch.float32, device=device)
        s = config.n_shared
        with torch.no_grad():
            coder.W_dec[:s, 1] = coder.W_dec[:s, 0]
            if config.decoder_init == "tied":
                coder.W_dec[:, 1] = coder.W_dec[:, 0]
                coder.W_enc[1] = coder.W_enc[0]
        super().__init__(coder, config, config.base_lr, config.total_steps, reference=reference, ranks=ranks)
        self.scales = torch.ones(2, device=device)  # activation scale per model, set on the first batch

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, float]:
        """One optimiser step on raw paired activations x [N, 2, d_in]."""
        return super().step(x, y)

    def prepare(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        x = x.to(self.coder.device, torch.float32)
        if self.n_steps == 0:
            self._init_from(x)
        return x / self.scales[None, :, None], None

    def prepare_heldout(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return x.to(self.coder.device, torch.float32) / self.scales[None, :, None], None

    def loss(self, x: Tensor, y: Tensor | None, ranks: Local = LOCAL) -> StepLoss:
        if self.reference:
            assert ranks.world == 1, "the dense reference objective runs on one process"
            return dense_crosscoder_objective(self.coder, x, self.dead, self.config.k, self.config.auxk_alpha)
        return crosscoder_objective(self.coder, x, self.dead, self.config.k, self.config.auxk_alpha, self.select_dtype,
                                    ranks)

    @torch.no_grad()
    def before_update(self) -> None:
        # A tied decoder gets the sum of both models' gradients; equal grads and equal Adam
        # moments keep the two copies identical.
        s, g = self.config.n_shared, self.coder.W_dec.grad
        if s and g is not None:
            g[:s] = g[:s].sum(1, keepdim=True).expand(-1, 2, -1)  # [s, 2, d_in]

    def metrics(self, out: StepLoss) -> dict[str, float]:
        return {"fvu_base": float(out.fvu[0]), "fvu_target": float(out.fvu[1]), "l0": out.l0,
                "dead_fraction": float(self.dead.float().mean()), "aux_loss": float(out.aux_loss), "lr": self.lr()}

    @torch.no_grad()
    def _init_from(self, x: Tensor) -> None:
        # One scalar per model: the RMS distance of its activations to their mean (over every rank's rows).
        if self.ranks.world == 1:
            self.scales.copy_((x - x.mean(0)).pow(2).sum(-1).mean(0).sqrt().clamp_min(1e-6))
            self.coder.b_dec.copy_(x.mean(0) / self.scales[:, None])
            return
        n, variance = total_variance(x, (0, 2), self.ranks)  # [2]
        self.scales.copy_((variance / n).sqrt().clamp_min(1e-6))
        mean = weighted_mean(x.flatten(1), torch.ones(x.shape[0], device=x.device), self.ranks).view_as(x[0])
        self.coder.b_dec.copy_(mean / self.scales[:, None])

    def summary(self) -> dict[str, Any]:
        mean = self.mean_recent(("fvu_base", "fvu_target", "l0", "aux_loss"))
        return {"fvu": {"base": mean["fvu_base"], "target": mean["fvu_target"]}, "l0": mean["l0"],
                "aux_loss": mean["aux_loss"], "averaged_over_last_steps": len(self.recent),
                "dead_fraction": float(self.dead.float().mean()), "steps": self.n_steps,
                "threshold": float(self.coder.threshold), "decoder_cos_init": self.decoder_cos_init(),
                **self.last_heldout}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "scales": self.scales.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.scales.copy_(state["scales"])

    def finished_coder(self, dtype: torch.dtype) -> SparseCoder:
        """A copy of the coder on raw activations, with both scalings folded in (see `_fold`)."""
        coder = SparseCoder(self.coder.cfg, dtype=torch.float32, device=self.coder.device)
        coder.load_state_dict(self.coder.state_dict())
        _fold(coder, self.scales)
        return coder.to(dtype)


@torch.no_grad()
def _fold(coder: SparseCoder, scales: Tensor) -> None:
    """Make `coder` (trained on x / scales) read raw activations, with encode = the selection score.

    1. Latent j's encoder row and bias × c_j = Σ_m ‖d_j^m‖, its decoder rows ÷ c_j: the
       reconstruction is unchanged and relu(pre) becomes f_j · c_j, the score the threshold
       was learned on, so `encode` selects as training did (dictionary_learning keeps f and
       compares f · c_j with the threshold; folding needs no change to SparseCoder).
    2. Model m: encoder ÷ s_m, decoder and b_dec × s_m (inputs and outputs in raw units).
    """
    c = code_norms(coder).clamp_min(1e-12)  # [d_sae]
    coder.W_enc.mul_(c)
    coder.b_enc.mul_(c)
    coder.W_dec.div_(c[:, None, None])
    coder.W_enc.div_(scales[:, None, None])
    coder.W_dec.mul_(scales[None, :, None])
    coder.b_dec.mul_(scales[:, None])


def _token_batches(batches: Batches, batch_size: int, d_in: int) -> Iterator[Tensor]:
    """Fixed-size batches [batch_size, 2, d_in] cut from the stream, epoch after epoch.

    A callable is called once per epoch; an iterable is iterated again (a one-shot iterator
    ends the stream). Each epoch's remainder smaller than batch_size is dropped."""
    for epoch in itertools.count():
        source = batches() if callable(batches) else batches
        one_shot = not callable(batches) and iter(source) is source
        buffer: list[Tensor] = []
        held, emitted = 0, 0
        for x in source:
            _check_batch(x, d_in)
            buffer.append(x)
            held += x.shape[0]
            while held >= batch_size:
                flat = torch.cat(buffer)
                yield flat[:batch_size]
                emitted += 1
                buffer, held = [flat[batch_size:]], held - batch_size
        if emitted == 0:
            raise ConfigError(f"batches: epoch {epoch} gave fewer than batch_size={batch_size} tokens; give a larger "
                              "stream or a smaller batch_size.")
        if one_shot:
            log.warning("batches: a one-shot iterator ran out after %d epoch(s); pass a callable or a re-iterable "
                        "to read it again", epoch + 1)
            return


def _check_batch(x: Any, d_in: int) -> None:
    if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[1] != 2 or x.shape[2] != d_in:
        got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise FormatError(f"batches: got a batch of {got}; expected float tensors [N, 2, {d_in}] "
                          "(base, target activations at the same tokens).")


def train_crosscoder(batches: Batches, config: CrosscoderConfig, *, d_in: int, hookpoint: str,
                     out_dir: str | Path | None = None, resume: bool = True, progress: bool = True, model: str = "",
                     device: str | torch.device | None = None, heldout: Tensor | None = None) -> SparseCoder:
    """Train a BatchTopK crosscoder on paired activations; return it (raw-activation units).

    Args:
        batches: float tensors [N, 2, d_in] (base, target at the same tokens), or a callable
            returning such an iterable; it is re-read from its start for another epoch or to
            skip the steps a checkpoint already did, so it must give the same stream each time
            (shuffled upstream, e.g. `PairedActivations.batches(layer, n, shuffle_seed=0)`).
        config: see `CrosscoderConfig`.
        d_in: activation width of each model.  hookpoint: where both were read (for cfg.json).
        out_dir: where the coder (cfg.json + weights), checkpoint.pt and log.jsonl go; None: in memory only.
        resume: continue from out_dir's checkpoint (or return its finished coder); False starts over.
        model: model spec(s) for cfg.json.  device: None: the device of the first batch.
        heldout: raw paired activations [n, 2, d_in] no step trains on: their FVU and the decoder's movement
            from its initialisation are logged 20 times over the run and kept in cfg.json.

    Under torchrun (a process group of 2+ ranks) the training is data parallel: every rank is given the same
    stream, trains on rows [rank::world] of each batch, and the ranks' gradients, variances, selections and
    dead-latent counts are the whole batch's, so the result is the one-process result (up to rounding, with a
    float32 selection: see `train.parallel`). Rank 0 alone writes `out_dir` (a filesystem every rank sees); a
    checkpoint resumes with the same number of ranks.

    The loss is FVU(base) + FVU(target), each over its own model's variance, so a model with
    larger activations does not dominate. cfg.json's `extra` holds the training config,
    the activation scales, the final FVU per model (mean over the last 10 steps), tokens seen
    and tokens/s.

    Example:
        >>> coder = train_crosscoder(lambda: acts.batches(6, 4096, shuffle_seed=0),
        ...                          CrosscoderConfig(d_sae=16384, k=64, n_tokens=50_000_000), d_in=576,
        ...                          hookpoint="model.layers.6", out_dir="ws/diff/run/crosscoder")
        >>> coder.encode(x)   # x [N, 2, 576] -> [N, 16384]
    """
    out = Path(out_dir) if out_dir is not None else None
    fingerprint = _fingerprint(config, d_in, hookpoint)
    ranks = data_parallel()
    if out is not None and resume and (done := finished_crosscoder(out, config, d_in=d_in, hookpoint=hookpoint)):
        return done  # every rank reads the same finished coder; nothing is written
    stream = _token_batches(batches, config.batch_size, d_in)
    first = next(stream)
    device = torch.device(device) if device is not None else first.device
    cfg = CoderConfig(architecture="batchtopk", d_in=d_in, d_sae=config.d_sae, k=config.k, kind="crosscoder",
                      n_sources=2, sources=SOURCES, hookpoint=hookpoint, model=model, apply_b_dec_to_input=True)
    trainer = CrosscoderTrainer(config, cfg, device, ranks=ranks)
    state = RunState()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if resume and (out / CHECKPOINT_NAME).exists():
            check_world_size(read_checkpoint(out / CHECKPOINT_NAME, mmap=True), out / CHECKPOINT_NAME, ranks.world,
                             "resume=False")
            try:
                state = load_checkpoint(out / CHECKPOINT_NAME, {"crosscoder": trainer}, fingerprint, ranks.world)
            except ArtifactError as e:
                raise ArtifactError(f"out_dir: {out} holds a crosscoder run with another config, d_in or hookpoint "
                                    f"({_stored_difference(out / CHECKPOINT_NAME, fingerprint) or e}); pass "
                                    "resume=False to overwrite it, or another out_dir.") from e
            log.info("resuming the crosscoder at step %d of %d", state.step, config.total_steps)
    stream = itertools.islice(itertools.chain([first], stream), state.step, None)
    tokens_per_s = _fit(trainer, stream, state, out if ranks.rank == 0 else None, fingerprint,
                        progress and ranks.rank == 0, heldout)
    coder = _finish(trainer, state, out if ranks.rank == 0 else None, fingerprint, tokens_per_s)
    if ranks.world > 1:
        barrier()  # the other ranks return once rank 0 has written out_dir
    return coder


def _stored_difference(path: Path, fingerprint: str) -> str | None:
    """Which settings the checkpoint at `path` was trained with differ from `fingerprint`'s (None: unreadable)."""
    try:
        return fingerprint_difference(read_checkpoint(path, mmap=True)["fingerprint"], fingerprint)
    except (ArtifactError, KeyError):
        return None


def _fit(trainer: CrosscoderTrainer, stream: Iterator[Tensor], state: RunState, out: Path | None, fingerprint: str,
         progress: bool, heldout: Tensor | None = None) -> float:
    """Steps from `state` to the budget; checkpoints and a JSONL log in `out`. Returns tokens/s."""
    config = trainer.config
    eval_every = max(1, config.total_steps // 20)
    jsonl = JsonlLog(out / "log.jsonl", resume_step=state.step or None) if out is not None else None
    t0, start_tokens = time.perf_counter(), state.text_tokens
    with train_progress(config.total_steps * config.batch_size, state.text_tokens, progress,
                        (state.step, config.total_steps)) as update:
        for x in stream:
            if state.step >= config.total_steps:
                break
            ranks = trainer.ranks
            m = trainer.step(x[ranks.rank::ranks.world] if ranks.world > 1 else x)  # this rank's rows [n_r, 2, d]
            state.advance(0, x.shape[0], x.shape[0])
            evaluate = heldout is not None and (state.step % eval_every == 0 or state.step == config.total_steps)
            if evaluate:
                m.update(trainer.heldout_metrics(heldout))
            update(x.shape[0], f"FVU base {m['fvu_base']:.3f} target {m['fvu_target']:.3f} L0 {m['l0']:.0f} "
                               f"dead {m['dead_fraction']:.1%}")
            if jsonl is not None and (evaluate or state.step % 10 == 0 or state.step == config.total_steps):
                jsonl.write({"step": state.step, "tokens": state.text_tokens, **m})
            if out is not None and config.checkpoint_every and state.step % config.checkpoint_every == 0:
                save_checkpoint(out / CHECKPOINT_NAME, state, {"crosscoder": trainer}, fingerprint, trainer.ranks.world)
    if state.step < config.total_steps:
        log.warning("crosscoder: the stream ended after %d of %d steps", state.step, config.total_steps)
    return (state.text_tokens - start_tokens) / max(time.perf_counter() - t0, 1e-9)


def _finish(trainer: CrosscoderTrainer, state: RunState, out: Path | None, fingerprint: str,
            tokens_per_s: float) -> SparseCoder:
    coder = trainer.finished_coder(parse_dtype(trainer.config.dtype))
    extra = {"crosscoder": trainer.config.to_dict(), "fingerprint": fingerprint,
             "activation_scales": [float(s) for s in trainer.scales],
             "training": {**trainer.summary(), "tokens": state.text_tokens, "tokens_per_s": tokens_per_s,
                          "complete": state.step >= trainer.config.total_steps}}
    coder.cfg = dataclasses.replace(coder.cfg, extra=extra)
    if out is not None:
        save_checkpoint(out / CHECKPOINT_NAME, state, {"crosscoder": trainer}, fingerprint, trainer.ranks.world)
        coder.save(out)
    return coder


def _fingerprint(config: CrosscoderConfig, d_in: int, hookpoint: str) -> str:
    """A run's identity: its config (without the checkpoint interval), the width and where it reads."""
    return config_fingerprint({**config.to_dict(), "checkpoint_every": None, "d_in": d_in, "hookpoint": hookpoint})


def finished_crosscoder(out_dir: str | Path, config: CrosscoderConfig, *, d_in: int,
                        hookpoint: str) -> SparseCoder | None:
    """The finished crosscoder in `out_dir` trained with this config, width and hookpoint, or None (what
    `train_crosscoder(..., resume=True)` returns without training)."""
    from .._io import read_json

    cfg = Path(out_dir) / "cfg.json"
    if not cfg.exists():
        return None
    extra = read_json(cfg).get("extra", {})
    if extra.get("fingerprint") != _fingerprint(config, d_in, hookpoint) or \
            not extra.get("training", {}).get("complete"):
        return None
    return SparseCoder.load(out_dir)


def remove_checkpoint(out_dir: str | Path) -> None:
    """Delete a finished run's checkpoint.pt (its Adam moments take twice the coder's size)."""
    path = Path(out_dir) / CHECKPOINT_NAME
    if path.exists():
        path.unlink()


__all__ = ["CrosscoderConfig", "CrosscoderTrainer", "SOURCES", "code_norms", "crosscoder_objective",
           "finished_crosscoder", "remove_checkpoint", "train_crosscoder"]
