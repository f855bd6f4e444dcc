"""Downstream metrics: the model's loss with a reconstruction spliced in at a hookpoint.

Per batch, three full forwards share one clean pass:
1. clean: the model as is; it also captures the dictionary's input (and target) activations;
2. spliced: the target hookpoint's activation replaced by the reconstruction at text positions;
3. zero-ablated: the same positions replaced by zeros.
CE-loss score = (CE_zero − CE_spliced) / (CE_zero − CE_clean) and KL score =
(KL_zero − KL_spliced) / KL_zero, with KL(clean ‖ patched) per position (SAELens's
definitions). CE and KL are averaged over positions whose input token is a text position.
For a transcoder, its output replaces the target hookpoint (`out_hookpoint`).
Under torchrun each rank sums its own batches; `DownstreamStats.all_reduce` adds them (float64).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..activations.capture import ActivationReader, first_tensor
from ..distributed import active, sum_over_ranks
from ..models.hookpoints import Hookpoint


@contextmanager
def replaced(model: nn.Module, hp: Hookpoint, new: Tensor, mask: Tensor) -> Iterator[None]:
    """Replace the activation at `hp` by `new` [B, T, d] where `mask` [B, T] is True."""
    module = model.get_submodule(hp.module)

    def swap(old: Tensor) -> Tensor:
        return torch.where(mask[..., None], new.to(old.dtype), old)

    if hp.side == "input":
        def pre_hook(_m: nn.Module, args: tuple, kwargs: dict):
            if args:
                return (swap(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": swap(kwargs["hidden_states"])}
        handle = module.register_forward_pre_hook(pre_hook, with_kwargs=True)
    else:
        def hook(_m: nn.Module, _args: tuple, output: Any):
            if isinstance(output, tuple):
                return (swap(output[0]), *output[1:])
            return swap(first_tensor(output))
        handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@dataclass
class DownstreamStats:
    """Sums of per-position CE and KL over evaluated positions (float64)."""

    n: int = 0
    ce_clean: float = 0.0
    ce_spliced: float = 0.0
    ce_zero: float = 0.0
    kl_spliced: float = 0.0
    kl_zero: float = 0.0

    _SUMS = ("ce_clean", "ce_spliced", "ce_zero", "kl_spliced", "kl_zero")

    def all_reduce(self) -> None:
        """Sum every rank's sums into each rank's (nothing to do without a process group)."""
        if not active():
            return
        sums = sum_over_ranks(torch.tensor([getattr(self, k) for k in self._SUMS], dtype=torch.float64)).tolist()
        for k, v in zip(self._SUMS, sums):
            setattr(self, k, v)
        self.n = int(sum_over_ranks(torch.tensor([self.n], dtype=torch.int64))[0])

    def result(self) -> dict[str, Any]:
        if self.n == 0:
            return {"n_positions": 0}
        mean = {k: getattr(self, k) / self.n for k in self._SUMS}
        return {
            "n_positions": self.n,
            "ce_loss_clean": mean["ce_clean"],
            "ce_loss_with_reconstruction": mean["ce_spliced"],
            "ce_loss_zero_ablation": mean["ce_zero"],
            "delta_ce": mean["ce_spliced"] - mean["ce_clean"],
            "ce_loss_score": (mean["ce_zero"] - mean["ce_spliced"]) / (mean["ce_zero"] - mean["ce_clean"]),
            "kl_with_reconstruction": mean["kl_spliced"],
            "kl_zero_ablation": mean["kl_zero"],
            "kl_score": (mean["kl_zero"] - mean["kl_spliced"]) / mean["kl_zero"] if mean["kl_zero"] else float("nan"),
        }


def _ce_kl(logits: Tensor, clean_logp: Tensor, targets: Tensor, pos: Tensor) -> tuple[float, float]:
    """Sum of CE and KL(clean ‖ this) over positions `pos` ([B, T-1] bool)."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # [B, T-1, V]
    ce = -logp.gather(-1, targets[..., None]).squeeze(-1)  # [B, T-1]
    kl = (clean_logp.exp() * (clean_logp - logp)).sum(-1)  # [B, T-1]
    return float(ce[pos].double().sum()), float(kl[pos].double().sum())


@torch.inference_mode()
def downstream_batch(model: nn.Module, hp_in: Hookpoint, hp_out: Hookpoint, reconstruct, tokens: Tensor,
                     mask: Tensor, stats: DownstreamStats) -> tuple[Tensor, Tensor]:
    """Run the three forwards on one batch; add to `stats`; return (x_in, x_out) of the clean pass.

    reconstruct: callable [B, T, d_in] → [B, T, d_out] (the dictionary's output).
    tokens: [B, T] long; mask: [B, T] bool (text positions, where the splice applies).
    """
    reader = ActivationReader(model, [hp_in] if hp_in == hp_out else [hp_in, hp_out], stop_early=False)
    store: dict[str, Tensor] = {}
    with reader.capturing(store):
        clean = model(input_ids=tokens, use_cache=False).logits
    x_in, x_out = store[hp_in.name], store[hp_out.name]
    x_hat = reconstruct(x_in)
    targets, pos = tokens[:, 1:], mask[:, :-1]
    clean_logp = F.log_softmax(clean[:, :-1].float(), dim=-1)
    ce_clean = -clean_logp.gather(-1, targets[..., None]).squeeze(-1)
    stats.ce_clean += float(ce_clean[pos].double().sum())
    stats.n += int(pos.sum())
    del clean
    with replaced(model, hp_out, x_hat, mask):
        ce, kl = _ce_kl(model(input_ids=tokens, use_cache=False).logits, clean_logp, targets, pos)
    stats.ce_spliced += ce
    stats.kl_spliced += kl
    with replaced(model, hp_out, torch.zeros_like(x_out), mask):
        ce, kl = _ce_kl(model(input_ids=tokens, use_cache=False).logits, clean_logp, targets, pos)
    stats.ce_zero += ce
    stats.kl_zero += kl
    return x_in, x_out
