"""Evaluate one or several reconstructors on the same tokens, sharing the model passes.

Reconstruction and sparsity come from one truncated stream for all reconstructors (the
forward stops after the deepest hookpoint they read). The CE/KL splice needs full
forwards: on its windows, one clean forward serves every reconstructor (and its captured
activations feed their reconstruction metrics), then one spliced and one zero-ablated
forward per reconstructor.

Under torchrun each rank runs a contiguous block of the batches one process would run (the
same batches: the legacy per-token figure depends on the batch mean), then every sum and count
is reduced across ranks (`all_reduce` of each accumulator: int64 counts, float64 sums), so
every rank returns the metrics one process would, up to float64 summation order.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
from torch import Tensor

from ..activations.fits import check_dictionaries_fit
from ..activations.stream import StreamConfig, stream_activations
from ..data.tokens import TokenWindows
from ..distributed import block, is_main, max_over_ranks, rank_and_world
from ..errors import ConfigError
from ..models.hookpoints import Hookpoint, resolve_hookpoint
from ..models.load import LoadedModel
from ..progress import token_progress
from .config import EvalConfig
from .downstream import DownstreamStats, downstream_batch
from .reconstruction import ReconstructionStats
from .reconstructors import Reconstructor
from .sparsity import SparsityStats

log = logging.getLogger(__name__)


def eval_window_range(config: EvalConfig, windows: TokenWindows) -> tuple[int, int]:
    """Windows [first, stop) to evaluate; a clear error if the workspace has too few."""
    n = math.ceil(config.n_tokens / windows.ctx_len)
    first = windows.n_windows - n if config.first_window is None else config.first_window
    if first < 0 or first + n > windows.n_windows:
        raise ConfigError(
            f"n_tokens: {config.n_tokens:,} tokens need {n} windows from window {max(first, 0)}, but the workspace has "
            f"{windows.n_windows} windows of {windows.ctx_len}; lower --n-tokens or rebuild the token windows with a "
            "larger budget."
        )
    return first, first + n


class _Accumulators:
    def __init__(self, rec: Reconstructor, hp_in: Hookpoint, hp_out: Hookpoint):
        self.rec, self.hp_in, self.hp_out = rec, hp_in, hp_out
        self.recon = ReconstructionStats()
        self.sparsity = SparsityStats(rec.d_sae) if rec.d_sae else None
        self.downstream = DownstreamStats()

    def check(self, x: Tensor) -> Tensor:
        """Refuse activations the dictionary cannot read: wrong width, NaN/inf."""
        if x.shape[-1] != self.rec.d_in:
            raise ConfigError(f"dictionary {self.rec.name!r} has d_in {self.rec.d_in}, but {self.hp_in.name} has width "
                              f"{x.shape[-1]}: it was trained on another model or hookpoint.")
        if not torch.isfinite(x).all():
            raise ConfigError(f"NaN/inf activations at {self.hp_in.name}: try --dtype float32 "
                              "(bf16/fp16 can overflow).")
        return x

    def all_reduce(self) -> None:
        """Sum every rank's accumulators (nothing to do without a process group)."""
        self.recon.all_reduce()
        if self.sparsity is not None:
            self.sparsity.all_reduce()
        self.downstream.all_reduce()

    def update(self, x_in: Tensor, x_out: Tensor, mask: Tensor) -> None:
        """x_in: [B, T, d_in], x_out: [B, T, d_out], mask: [B, T]."""
        x, y = self.check(x_in[mask].float()), x_out[mask].float()
        latents, y_hat = self.rec(x)
        self.recon.update(y, y_hat)
        if self.sparsity is not None and latents is not None:
            self.sparsity.update(latents)


def rank_batches(lo: int, hi: int, batch_size: int) -> tuple[int, int]:
    """This rank's windows of [lo, hi): a contiguous block of the batches of `batch_size` windows one process
    would run from `lo` ([lo, hi) itself without a process group)."""
    rank, world = rank_and_world()
    b0, b1 = block(-(-(hi - lo) // batch_size), rank, world)
    return min(lo + b0 * batch_size, hi), min(lo + b1 * batch_size, hi)


def evaluate_many(recs: list[Reconstructor], lm: LoadedModel, windows: TokenWindows, config: EvalConfig,
                  progress: bool = True) -> list[dict[str, Any]]:
    """Metrics of each reconstructor on the same windows. Returns one dict per reconstructor (on every rank
    under torchrun: the sums of all ranks)."""
    check_dictionaries_fit({r.name: r.coder for r in recs if getattr(r, "coder", None) is not None}, lm)
    accs = [_Accumulators(r, resolve_hookpoint(lm.model, r.hookpoint), resolve_hookpoint(lm.model, r.out_hookpoint))
            for r in recs]
    first, stop = eval_window_range(config, windows)
    n_ce = math.ceil(config.ce_n_tokens / windows.ctx_len) if "downstream" in config.metrics else 0
    progress = progress and is_main()
    ce_lo, ce_hi = rank_batches(first, first + n_ce, config.batch_size)
    mask_all = windows.text_mask()
    t0 = time.perf_counter()
    with token_progress((ce_hi - ce_lo) * windows.ctx_len, "CE/KL splice", enabled=progress and n_ce > 0) as advance:
        for lo in range(ce_lo, ce_hi, config.batch_size):
            hi = min(lo + config.batch_size, ce_hi)
            tokens, mask = windows.tokens[lo:hi].to(lm.device, torch.long), mask_all[lo:hi].to(lm.device)
            for acc in accs:
                x_in, x_out = downstream_batch(lm.model, acc.hp_in, acc.hp_out, _as_bt(acc), tokens, mask,
                                               acc.downstream)
                acc.update(x_in, x_out, mask)
            advance(tokens.numel())
    t_ce = time.perf_counter() - t0
    hps = list({h.name: h for a in accs for h in (a.hp_in, a.hp_out)}.values())
    t1 = time.perf_counter()
    start, end = rank_batches(first + n_ce, stop, config.batch_size)
    for batch in stream_activations(lm, windows, hps, StreamConfig(config.batch_size, start, end), progress=progress):
        for acc in accs:
            acc.update(batch.acts[acc.hp_in.name], batch.acts[acc.hp_out.name], batch.mask.to(lm.device))
    t_ce, t_stream = max_over_ranks(torch.tensor([t_ce, time.perf_counter() - t1], dtype=torch.float64)).tolist()
    for acc in accs:
        acc.all_reduce()
    return [_result(acc, config, (first, stop), n_ce, t_ce, t_stream) for acc in accs]


def _as_bt(acc: _Accumulators):
    """[B, T, d_in] → [B, T, d_out] through a reconstructor that works on [N, d]."""
    def f(x: Tensor) -> Tensor:
        _, y = acc.rec(acc.check(x.reshape(-1, x.shape[-1]).float()))
        return y.reshape(*x.shape[:-1], -1)
    return f


def _result(acc: _Accumulators, config: EvalConfig, window_range: tuple[int, int], n_ce: int,
            t_ce: float, t_stream: float) -> dict[str, Any]:
    out: dict[str, Any] = {"dictionary": acc.rec.describe(), "windows": list(window_range),
                           "seconds": {"downstream": t_ce, "stream": t_stream}}
    if "reconstruction" in config.metrics:
        out["reconstruction"] = acc.recon.result()
    if "sparsity" in config.metrics:
        out["sparsity"] = acc.sparsity.result() if acc.sparsity else {"not_applicable": "a dense map has no latents"}
    if "downstream" in config.metrics and n_ce:
        out["downstream"] = acc.downstream.result()
    return out
