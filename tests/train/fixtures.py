"""Synthetic activations with a known sparse dictionary, and a tiny random Llama model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from saelab.train import DictionarySpec, TrainConfig
from saelab.train.run import train
from saelab.train.source import tensor_reader


@dataclass
class Sparse:
    """x = z @ D_in + bias, y = z @ D_out (+ x @ A): every token uses k_true of n_true directions."""

    acts: dict[str, torch.Tensor]
    """{"x": [n_windows, ctx, d], "y": [n_windows, ctx, d_out]}"""
    mask: torch.Tensor
    """bool [n_windows, ctx]; position 0 is excluded, like the attention sink"""
    D_in: torch.Tensor


def make_sparse(n_windows: int = 1024, ctx: int = 32, d: int = 32, n_true: int = 64, k_true: int = 4,
                d_out: int = 24, seed: int = 0, token_seed: int = 1, skip: bool = False) -> Sparse:
    """`seed` fixes the dictionary (and bias, skip map), `token_seed` the tokens drawn from it."""
    gen = torch.Generator().manual_seed(seed)
    D_in = torch.nn.functional.normalize(torch.randn(n_true, d, generator=gen), dim=-1)
    D_out = torch.nn.functional.normalize(torch.randn(n_true, d_out, generator=gen), dim=-1)
    bias = 0.5 * torch.randn(d, generator=gen)
    A = 0.3 * torch.randn(d, d_out, generator=gen)
    gen = torch.Generator().manual_seed(token_seed)
    n = n_windows * ctx
    idx = torch.rand(n, n_true, generator=gen).argsort(-1)[:, :k_true]  # [n, k_true] distinct latents
    z = torch.zeros(n, n_true).scatter_(1, idx, 1 + 2 * torch.rand(n, k_true, generator=gen))
    x = z @ D_in + bias
    y = z @ D_out + (x @ A if skip else 0)
    x[::ctx] *= 10  # a loud "sink" at position 0 of each window, excluded by the mask
    mask = torch.ones(n_windows, ctx, dtype=torch.bool)
    mask[:, 0] = False
    return Sparse({"x": x.view(n_windows, ctx, d), "y": y.view(n_windows, ctx, d_out)}, mask, D_in)


def fit_sparse(data: Sparse, config: TrainConfig, run_dir: Path, n_windows: int | None = None, **kw):
    """Train on windows [0, n_windows) of `data`; returns (trainers, state)."""
    n_windows = n_windows or data.mask.shape[0]
    widths = {name: int(a.shape[-1]) for name, a in data.acts.items()}
    return train(config, tensor_reader(data.acts, data.mask), {"x": "x", "y": "y"}, widths, (0, n_windows), run_dir,
                 ctx_len=data.mask.shape[1], fingerprint_extra={}, progress=False, **kw)


def held_out(data: Sparse, name: str = "x") -> torch.Tensor:
    return data.acts[name][data.mask]




def spec(**kw) -> DictionarySpec:
    """A TopK SAE on "x" with 128 latents, k=4, unless overridden."""
    return DictionarySpec(**{"name": "sae", "hookpoint": "x", "d_sae": 128, "k": 4, **kw})


def config(*specs: DictionarySpec, **kw) -> TrainConfig:
    """A TrainConfig for the synthetic data: 4 windows (124 text tokens) per step."""
    base = dict(n_tokens=10**9, batch_size=4, shuffle_windows=16, dead_tokens=2_000, log_every=5, checkpoint_every=0)
    return TrainConfig(specs or (spec(),), **{**base, **kw})
