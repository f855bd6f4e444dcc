"""Tiny workspaces: token windows, the synthetic narrow/wide dictionaries, their latent stores."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from saelab.data.tokens import TokenWindows, save_token_windows
from saelab.latents import run as cache
from saelab.latents.config import CacheConfig
from saelab.workspace import Workspace

from ..latents.fixtures import SPECIAL, tiny_lm, tiny_windows
from .synthetic import Truth, coder

SAME_HOOK = {"narrow": ("narrow", "model.layers.1"), "wide": ("wide", "model.layers.1")}
"""Both synthetic dictionaries at the same hookpoint: decoder cosine applies."""


def saved_windows(ws: Workspace, seed: int = 0) -> TokenWindows:
    """tiny_windows with a complete cfg.json, written to `ws.tokens`."""
    w = tiny_windows(seed)
    cfg = {**w.cfg, "ctx_len": w.ctx_len, "n_tokens": w.n_tokens, "seed": seed, "exclude": list(w.config.exclude),
           "special_ids": SPECIAL, "bos_id": None, "model": "tiny-llama"}
    windows = TokenWindows(w.tokens, w.doc_index, [{"source": "random", "doc_id": 0, "n_tokens": w.n_tokens}],
                           SPECIAL, None, w.config, cfg)
    save_token_windows(windows, ws.tokens)
    return windows


def make_workspace(root: Path, truth: Truth, names: dict[str, tuple[str, str]], seed: int = 0) -> Workspace:
    """names: dictionary name → ("narrow" | "wide", hookpoint); each saved and cached (shards of 4 / 8 windows)."""
    ws = Workspace(root)
    windows = saved_windows(ws, seed)
    lm = tiny_lm()
    for i, (name, (which, hookpoint)) in enumerate(names.items()):
        c = coder(truth.narrow if which == "narrow" else truth.wide, hookpoint=hookpoint)
        c.save(ws.dictionary(name))
        config = CacheConfig(batch_size=2, shard_windows=4 * (1 + i % 2), value_dtype="float16")
        cache(config, ws, lm, windows, {name: c}, progress=False)
    torch.set_num_threads(1)
    return ws


def copy_dictionary(src: Workspace, name: str, dst: Workspace, new_name: str) -> None:
    shutil.copytree(src.dictionary(name), dst.dictionary(new_name))
    shutil.copytree(src.latents(name), dst.latents(new_name))
