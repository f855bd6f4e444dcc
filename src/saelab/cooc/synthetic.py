"""Synthetic workspaces (token windows + one latent store) for tests and benchmarks.

Written with the latents package's own shard writer and manifest, so `LatentStore` reads
them exactly like a cached store. `zipf_entries` draws realistic sparse codes: per token
`l0` latents, half from the document's "topic" latents and half from a global Zipf law.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.tokens import TokenizeConfig, TokenWindows, hash_tokens, save_token_windows
from ..latents.manifest import finalize_store, prepare_store, write_manifest
from ..latents.shard import ShardBuilder
from ..workspace import Workspace


def write_workspace(root: str | Path, tokens: np.ndarray, doc_index: np.ndarray, entries: np.ndarray, d_sae: int,
                    name: str = "synth", shard_windows: int = 64, exclude: tuple = (),
                    hookpoint: str = "model.layers.6") -> Workspace:
    """tokens, doc_index: int [n_windows, ctx_len]; entries: int64 [n, 3] (window, position, latent),
    each firing with value 1 + latent/d_sae. Returns the workspace."""
    ws = Workspace.at(root)
    n_windows, ctx = tokens.shape
    tok = torch.from_numpy(np.ascontiguousarray(tokens, np.int32))
    docs = [{"source": "synthetic", "doc_id": str(i), "n_tokens": int((doc_index == i).sum())}
            for i in range(int(doc_index.max()) + 1)]
    cfg = {"artifact": "tokens", "ctx_len": ctx, "n_tokens": tok.numel(), "seed": 0, "exclude": list(exclude),
           "special_ids": [], "bos_id": None, "n_documents": len(docs), "tokens_hash": hash_tokens(tok)}
    windows = TokenWindows(tok, torch.from_numpy(np.ascontiguousarray(doc_index, np.int32)), docs, [], None,
                           TokenizeConfig(ctx_len=ctx, n_tokens=tok.numel(), exclude=tuple(exclude)), cfg)
    save_token_windows(windows, ws.tokens)
    _write_store(ws.latents(name), windows, entries, d_sae, shard_windows, name, hookpoint)
    return ws


def _write_store(store: Path, windows: TokenWindows, entries: np.ndarray, d_sae: int, shard_windows: int,
                 name: str, hookpoint: str) -> None:
    identity = {"artifact": "latents", "dictionary": name, "dictionary_hash": "synthetic", "hookpoint": hookpoint,
                "d_in": 0, "d_sae": d_sae, "model": {"path": "synthetic"}, "tokens_hash": windows.tokens_hash,
                "n_windows": windows.n_windows, "ctx_len": windows.ctx_len, "value_dtype": "bfloat16",
                "shard_windows": shard_windows, "excluded": list(windows.config.exclude)}
    prepare_store(store, identity, overwrite=True)
    order = np.lexsort((entries[:, 2], entries[:, 1], entries[:, 0]))  # (window, position, latent) order
    entries = entries[order]
    n_shards = -(-windows.n_windows // shard_windows)
    records = {}
    for i in range(n_shards):
        w0, w1 = i * shard_windows, min((i + 1) * shard_windows, windows.n_windows)
        sel = entries[(entries[:, 0] >= w0) & (entries[:, 0] < w1)]
        b = ShardBuilder(i, w0, w1, d_sae, windows.ctx_len, torch.bfloat16)
        values = torch.from_numpy(1.0 + sel[:, 2] / d_sae).to(torch.bfloat16)
        b.parts.append((torch.from_numpy(sel[:, 2].astype(np.int32)), torch.from_numpy(sel[:, 0].astype(np.int32)),
                        torch.from_numpy(sel[:, 1]).to(b.pos_dtype), values))
        b.n_text_tokens = (w1 - w0) * windows.ctx_len
        records[i] = b.write(store)
    write_manifest(store / "manifest.json", records, n_shards)
    finalize_store(store, identity, n_shards)


def zipf_entries(n_windows: int, ctx_len: int, d_sae: int, l0: int = 32, doc_len: int = 600,
                 topic_size: int = 64, alpha: float = 1.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(doc_index int32 [n_windows, ctx_len], entries int64 [n, 3]): documents of ~doc_len tokens
    (exponential lengths), each token firing ≤ l0 distinct latents."""
    rng = np.random.default_rng(seed)
    n_tok = n_windows * ctx_len
    lengths = np.maximum(1, rng.exponential(doc_len, size=n_tok // max(doc_len // 4, 1) + 1).astype(np.int64))
    doc = np.repeat(np.arange(lengths.size), lengths)[:n_tok]
    p = 1.0 / np.arange(1, d_sae + 1) ** alpha
    perm = rng.permutation(d_sae)  # frequent latents are not the low ids
    topics = perm[rng.choice(d_sae, size=(int(doc[-1]) + 1, topic_size), p=p / p.sum())]
    glob = perm[rng.choice(d_sae, size=(n_tok, l0), p=p / p.sum())]
    local = topics[doc[:, None], rng.integers(0, topic_size, size=(n_tok, l0))]
    lat = np.where(rng.random((n_tok, l0)) < 0.5, local, glob)  # [n_tok, l0]
    lat.sort(axis=1)
    first = np.c_[np.ones((n_tok, 1), bool), lat[:, 1:] != lat[:, :-1]]
    g = np.repeat(np.arange(n_tok), l0)[first.ravel()]
    entries = np.c_[g // ctx_len, g % ctx_len, lat.ravel()[first.ravel()]].astype(np.int64)
    return doc.reshape(n_windows, ctx_len).astype(np.int32), entries
