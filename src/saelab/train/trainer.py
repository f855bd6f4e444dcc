"""`Trainer`: one dictionary, its optimiser, rate schedule and dead-latent counters; `DictionaryTrainer`
for SAEs and transcoders (the crosscoder's is in `crosscoder.py`).

The run loop (`loop.py`) feeds every trainer of a run the same batches; a trainer knows
nothing about models, windows or files, so it is tested on synthetic activations.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

from ..coders import CoderConfig, SparseCoder
from ..distributed import LOCAL, Local
from .config import DictionarySpec, OptimConfig, TrainConfig
from .objective import StepLoss, objective
from .reference import dense_objective

log = logging.getLogger(__name__)

RECENT = 10


def geometric_median(points: Tensor, n_iter: int = 100, tol: float = 1e-6, ranks: Local = LOCAL) -> Tensor:
    """Weiszfeld's algorithm. points [N, d] -> [d]: the point minimising the sum of distances.

    ranks: `distributed.DataParallel` when `points` are this rank's rows of a batch split over ranks; each
    iteration's weighted sums are then summed over the ranks, so every rank gets the whole batch's median."""
    median = weighted_mean(points, torch.ones(points.shape[0], dtype=points.dtype, device=points.device), ranks) \
        if ranks.world > 1 else points.mean(0)
    for _ in range(n_iter):
        weights = 1 / (points - median).norm(dim=1).clamp_min(1e-8)  # [N]
        new = weighted_mean(points, weights, ranks)
        done = (new - median).norm() <= tol * median.norm().clamp_min(1e-8)
        median = new
        if done:
            break
    return median


def weighted_mean(points: Tensor, weights: Tensor, ranks: Local = LOCAL) -> Tensor:
    """Σ w·p / Σ w over the batch: points [N, d], weights [N] -> [d] (sums over every rank's rows in float64
    under data parallel)."""
    if ranks.world == 1:
        return (weights[:, None] * points).sum(0) / weights.sum()
    sums = ranks.sum(torch.cat([(weights[:, None] * points).double().sum(0), weights.double().sum()[None]]))
    return (sums[:-1] / sums[-1]).to(points.dtype)


def lr_factor(step: int, warmup: int, total: int, decay_fraction: float) -> float:
    """Linear warm-up over `warmup` steps, constant, then linear decay to 0 over the last
    `decay_fraction` of the steps (the schedule of Anthropic's and dictionary_learning's recipes)."""
    if step < warmup:
        return (step + 1) / warmup
    decay_steps = int(total * decay_fraction)
    if decay_steps and step >= total - decay_steps:
        return max(0.0, (total - step) / decay_steps)
    return 1.0


def select_dtype(encoder_dtype: str, coder_dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype of the step's dense encoder product: `encoder_dtype` as `models.load.parse_dtype` reads it
    (`auto`: bfloat16 where the device multiplies it fast), for a float32 coder; other coders keep their own."""
    from ..models.load import parse_dtype

    return parse_dtype(encoder_dtype, device, "encoder_dtype") if coder_dtype == torch.float32 else coder_dtype


def coder_config(spec: DictionarySpec, d_in: int, d_out: int, hookpoint: str, out_hookpoint: str | None,
                 model: str) -> CoderConfig:
    """The CoderConfig of the dictionary `spec` trains (hookpoints given as canonical names)."""
    transcoder = spec.is_transcoder
    return CoderConfig(
        architecture=spec.architecture, d_in=d_in, d_sae=spec.d_sae, k=spec.k,
        kind="transcoder" if transcoder else "sae", d_out=d_out if transcoder else None,
        hookpoint=hookpoint, out_hookpoint=out_hookpoint if transcoder else None, model=model, skip=spec.skip,
        # sparsify shifts SAE inputs by b_dec but not transcoder inputs (b_dec lives in the output space)
        apply_b_dec_to_input=not transcoder,
        group_sizes=spec.groups() if spec.architecture == "matryoshka" else None,
    )


class Trainer:
    """What every dictionary's optimisation shares: Adam with a warm-up / constant / decay rate, the
    dead-latent counters AuxK reads, the BatchTopK inference threshold, checkpoint state.

    A subclass says how a batch is prepared (`prepare`), what the loss is (`loss`), what is done to
    the gradients and weights around the Adam update, and which metrics it logs.
    """

    def __init__(self, coder: SparseCoder, config: OptimConfig, base_lr: float, total_steps: int,
                 reference: bool = False, ranks: Local = LOCAL):
        self.coder, self.config, self.base_lr, self.total_steps = coder, config, base_lr, total_steps
        self.reference = reference  # the dense reference objective (tests, bench/train.py's "before")
        # `DataParallel` when each step's batch is split over ranks: losses, selections and counters are the
        # whole batch's, gradients are summed, so every rank keeps the same weights
        self.ranks = ranks
        self.select_dtype = select_dtype(config.encoder_dtype, coder.dtype, coder.device)
        self.warmup = config.warmup_steps(total_steps)
        # fused: one kernel per parameter (12 ms instead of 116 ms for a 16K × 576 dictionary on a 2-core CPU)
        self.optimizer = torch.optim.Adam(coder.parameters(), lr=base_lr, betas=config.adam_betas, fused=True)
        self.tokens_since_fired = torch.zeros(coder.d_sae, dtype=torch.long, device=coder.device)
        self.n_steps = 0
        self.n_tokens = 0
        self.n_threshold_updates = 0
        self.recent: list[dict[str, float]] = []  # metrics of the last RECENT steps, for the final summary
        self.last_heldout: dict[str, float | None] = {}  # the last held-out evaluation (see `heldout_metrics`)
        # the initial decoder (a function of the seed, so a resumed run rebuilds it): how far training moved it
        self.W_dec_init = coder.W_dec.detach().clone()

    @property
    def dead(self) -> Tensor:
        """bool [d_sae]: latents that have not fired for `dead_tokens` training tokens."""
        return self.tokens_since_fired >= self.config.dead_tokens

    def lr(self) -> float:
        return self.base_lr * lr_factor(self.n_steps, self.warmup, self.total_steps, self.config.lr_decay_fraction)

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, float]:
        """One optimiser step on a batch (see the subclass for its shapes)."""
        x, y = self.prepare(x, y)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr()
        out = self.loss(x, y, self.ranks)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.ranks.sum_gradients(self.coder.parameters())
        self.before_update()
        self.optimizer.step()
        self.after_update()
        self._update_counters(out.fired, out.n)
        if out.min_selected is not None:
            self._update_threshold(out.min_selected)
        metrics = self.metrics(out)
        self.n_steps += 1
        self.recent = (self.recent + [metrics])[-RECENT:]
        return metrics

    def prepare(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return x, y

    def loss(self, x: Tensor, y: Tensor | None, ranks: Local = LOCAL) -> StepLoss:
        """The objective of a batch (this rank's rows of it under data parallel, `ranks`)."""
        raise NotImplementedError

    def before_update(self) -> None:
        """Change the gradients before Adam reads them."""

    def after_update(self) -> None:
        """Change the weights after Adam's update."""

    def metrics(self, out: StepLoss) -> dict[str, float]:
        raise NotImplementedError

    @torch.no_grad()
    def decoder_cos_init(self) -> float | None:
        """Median over latents of the cosine between a decoder row and its initial value (1.0: the decoder
        never moved; a trained one falls well below). None where the rows started at zero (transcoders)."""
        init = self.W_dec_init.flatten(1)
        if not bool((init.norm(dim=1) > 0).all()):
            return None
        cos = torch.nn.functional.cosine_similarity(self.coder.W_dec.detach().flatten(1), init, dim=1)
        return float(cos.median())

    def heldout_metrics(self, x: Tensor, y: Tensor | None = None) -> dict[str, float | None]:
        """FVU on held-out activations (the training selection, no update) and the decoder's movement."""
        with torch.no_grad():  # every rank holds the held-out tokens whole
            out = self.loss(*self.prepare_heldout(x, y), LOCAL)
        fvu = out.fvu
        self.last_heldout = {"heldout_fvu": float(fvu.mean()) if fvu.ndim else float(fvu),
                             "decoder_cos_init": self.decoder_cos_init()}
        if fvu.ndim:  # a crosscoder: each model's own too
            names = self.coder.cfg.sources or [str(i) for i in range(len(fvu))]
            self.last_heldout.update({f"heldout_fvu_{n}": float(v) for n, v in zip(names, fvu)})
        return dict(self.last_heldout)

    def prepare_heldout(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return x, y

    def mean_recent(self, keys: tuple[str, ...]) -> dict[str, float]:
        n = max(1, len(self.recent))
        return {key: sum(m[key] for m in self.recent) / n for key in keys}

    def _update_counters(self, fired: Tensor, n_tokens: int) -> None:
        self.tokens_since_fired += n_tokens
        self.tokens_since_fired[fired] = 0
        self.n_tokens += n_tokens

    @torch.no_grad()
    def _update_threshold(self, min_selected: float) -> None:
        # dictionary_learning's BatchTopK threshold: a running estimate of the smallest
        # activation BatchTopK selects. It starts half way through training (early weights
        # are not the final ones): a plain mean at first, then an EMA with threshold_beta.
        if self.n_steps < self.total_steps // 2:
            return
        self.n_threshold_updates += 1
        beta = min(self.config.threshold_beta, 1 - 1 / self.n_threshold_updates)
        thr = self.coder.threshold
        thr.copy_(beta * thr + (1 - beta) * min_selected)

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"coder": self.coder.state_dict(), "optimizer": self.optimizer.state_dict(),
                "tokens_since_fired": self.tokens_since_fired.clone(), "n_steps": self.n_steps,
                "n_tokens": self.n_tokens, "n_threshold_updates": self.n_threshold_updates, "recent": self.recent,
                "last_heldout": self.last_heldout}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.coder.load_state_dict(state["coder"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.tokens_since_fired.copy_(state["tokens_since_fired"])
        self.n_steps, self.n_tokens = int(state["n_steps"]), int(state["n_tokens"])
        self.n_threshold_updates = int(state["n_threshold_updates"])
        self.recent = [dict(m) for m in state["recent"]]
        self.last_heldout = dict(state.get("last_heldout", {}))


class DictionaryTrainer(Trainer):
    """Trains one SparseCoder (SAE or transcoder) with Adam, unit-norm decoder rows and AuxK.

    Example:
        >>> t = DictionaryTrainer(spec, coder_config(spec, 64, 64, "x", None, ""), config, total_steps=100)
        >>> metrics = t.step(x, x)        # x [N, 64]
    """

    def __init__(self, spec: DictionarySpec, cfg: CoderConfig, config: TrainConfig, total_steps: int,
                 device: str | torch.device = "cpu", seed: int = 0, reference: bool = False, ranks: Local = LOCAL):
        self.spec = spec
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the initial weights depend only on the seed
            coder = SparseCoder(cfg, dtype=torch.float32, device=device)
        if cfg.kind == "transcoder":
            # sparsify's transcoder init: a zero decoder, so each row starts as the (normalised)
            # mean residual of the tokens its latent first fires on (faster than random rows).
            with torch.no_grad():
                coder.W_dec.zero_()
        super().__init__(coder, config, config.lr_for(spec), total_steps, reference=reference, ranks=ranks)

    @torch.no_grad()
    def init_b_dec(self, y: Tensor) -> None:
        """Set b_dec from the first batch's targets y [N, d_out] (geometric median, mean, or zeros; of the whole
        batch under data parallel)."""
        how = self.config.b_dec_init
        if how == "geometric_median":
            self.coder.b_dec.copy_(geometric_median(y.float(), ranks=self.ranks))
        elif how == "mean":
            ones = torch.ones(y.shape[0], device=y.device)
            self.coder.b_dec.copy_(weighted_mean(y.float(), ones, self.ranks) if self.ranks.world > 1
                                   else y.float().mean(0))

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, float]:
        """One optimiser step on x [N, d_in] (encoder input) and y [N, d_out] (target)."""
        return super().step(x, y)

    def prepare(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if self.n_steps == 0:
            self.init_b_dec(y)
        return x, y

    def loss(self, x: Tensor, y: Tensor | None, ranks: Local = LOCAL) -> StepLoss:
        if self.reference:
            assert ranks.world == 1, "the dense reference objective runs on one process"
            return dense_objective(self.coder, x, y, self.dead, self.config.auxk_alpha, self.spec.groups())
        return objective(self.coder, x, y, self.dead, self.config.auxk_alpha, self.spec.groups(), self.select_dtype,
                         ranks)

    @torch.no_grad()
    def before_update(self) -> None:
        # The rows are renormalised after the step, so the gradient component along each row
        # would only be undone; removing it keeps Adam's moments meaningful (sparsify does this).
        W, g = self.coder.W_dec, self.coder.W_dec.grad
        if g is None:
            return
        parallel = (g * W).sum(-1, keepdim=True)  # [d_sae, 1]; rows are unit norm
        g.sub_(parallel * W)

    def after_update(self) -> None:
        self.coder.set_decoder_unit_norm()

    def metrics(self, out: StepLoss) -> dict[str, float]:
        return {"fvu": float(out.fvu), "l0": out.l0, "dead_fraction": float(self.dead.float().mean()),
                "aux_loss": float(out.aux_loss), "loss": float(out.loss.detach()), "lr": self.lr()}

    def summary(self) -> dict[str, float | int | None]:
        """fvu, l0, aux_loss averaged over the last RECENT training steps; dead fraction and counts now."""
        out: dict[str, float | int | None] = dict(self.mean_recent(("fvu", "l0", "aux_loss")))
        thr = self.coder.threshold
        return {**out, "averaged_over_last_steps": len(self.recent), "dead_fraction": float(self.dead.float().mean()),
                "steps": self.n_steps, "text_tokens": self.n_tokens,
                "threshold": float(thr) if thr is not None and thr.ndim == 0 else None,
                "decoder_cos_init": self.decoder_cos_init(), **self.last_heldout}
