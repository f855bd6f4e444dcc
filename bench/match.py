"""Matching a 24,576-latent and a 2,048-latent dictionary: saelab's all-pairs `match` vs the
seed's FeatureMatcher (500 random candidates, data reloaded per candidate), same stores.

Inputs are synthesised at the real sizes on SmolLM2's width (d = 576) over the demo's token
budget (1,024 windows × 256 = 262,144 tokens), with a planted truth:
- narrow ("full", 2,048): random unit directions;
- wide ("wide24k", 24,576): 1,024 near-twins of narrow latents (cos ≈ 0.93), 2–3 children
  for each of 512 narrow latents (d + u_c, Σ u_c = 0, each alone cos < 0.7), the rest novel;
  the last 512 narrow latents have no counterpart;
- activations: 32 wide latents per token (Zipf frequencies); a twin's narrow latent fires with
  it (0.9× + noise), a parent fires where any child fires (their sum), unique narrow latents
  fire on their own; tokens depend on the strongest wide latent, so top tokens mean something.
Both stores are written with saelab's own shard writer and read through `LatentStore`.

The seed (reimplemented from its description in issue #7): for a source latent, 500 target
latents drawn at random; for each, its activations reloaded from the store, top-token
Jaccard, Pearson r restricted to the positions where both fire; combined = mean of the two;
no assignment. Recall: the planted partner (twin, or any child of a parent) is the top match.

    flock /tmp/saelab-cpu.lock .venv/bin/python bench/match.py [--dir /tmp/saelab-bench-match] [--seed-latents 20]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from saelab.coders import CoderConfig, SparseCoder
from saelab.data.tokens import TokenizeConfig, TokenWindows, hash_tokens, save_token_windows
from saelab.latents.manifest import finalize_store, manifest_path, prepare_store, write_manifest
from saelab.latents.shard import ShardBuilder
from saelab.latents.store import LatentStore
from saelab.match import FeatureMatcher, MatchConfig, load_context, run
from saelab.workspace import Workspace

D, N_NARROW, N_WIDE, K = 576, 2048, 24576, 32
N_WINDOWS, CTX, SHARD, VOCAB = 1024, 256, 256, 8192
N_TWIN, N_SPLIT = 1024, 512
ROOT = Path(__file__).resolve().parents[1]


# -- synthetic dictionaries and stores ----------------------------------------------------------------
def directions(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[int, list[int]]]:
    """narrow [2048, 576], wide [24576, 576] unit rows, and narrow latent → its planted partners."""
    unit = lambda x: (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)  # noqa: E731
    narrow = unit(rng.standard_normal((N_NARROW, D)))
    rows, truth = [], {}
    for i in range(N_TWIN):
        rows.append(unit(narrow[i] + 0.4 * unit(rng.standard_normal(D))))
        truth[i] = [len(rows) - 1]
    for i in range(N_TWIN, N_TWIN + N_SPLIT):
        n_c = 2 + i % 2
        u = rng.standard_normal((n_c, D))
        u = 1.1 * unit(u - u.mean(0))  # Σ u_c = 0: the children sum back to the parent
        truth[i] = []
        for c in range(n_c):
            rows.append(unit(narrow[i] + u[c]))
            truth[i].append(len(rows) - 1)
    wide = np.concatenate([np.stack(rows), unit(rng.standard_normal((N_WIDE - len(rows), D)))])
    perm = rng.permutation(N_WIDE)  # hide the structure behind a shuffle
    inv = np.argsort(perm)
    return narrow, wide[perm], {i: sorted(int(inv[j]) for j in js) for i, js in truth.items()}


def activations(rng: np.random.Generator,
                truth: dict[int, list[int]]) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """wide [n_tok, 24576] and narrow [n_tok, 2048] CSR activations, and tokens [n_tok]."""
    n_tok = N_WINDOWS * CTX
    p = 1.0 / np.arange(1, N_WIDE + 1) ** 0.6
    p = p[rng.permutation(N_WIDE)] / p.sum()
    cols = rng.choice(N_WIDE, size=(n_tok, K), p=p)  # [n_tok, K]
    vals = rng.exponential(1.0, size=(n_tok, K)).astype(np.float32) + 0.1
    wide = sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(0, n_tok * K + 1, K)), shape=(n_tok, N_WIDE))
    wide.sum_duplicates()
    t_rows, t_cols, t_vals = [], [], []
    for i, js in truth.items():
        t_rows += js
        t_cols += [i] * len(js)
        t_vals += [0.9] * len(js) if len(js) == 1 else [1.0] * len(js)
    T = sp.csr_matrix((t_vals, (t_rows, t_cols)), shape=(N_WIDE, N_NARROW), dtype=np.float32)
    n_own = n_tok * 4  # unique narrow latents and noise firings: 4 per token
    own = sp.csr_matrix((rng.exponential(1.0, n_own).astype(np.float32),
                         (rng.integers(0, n_tok, n_own), rng.integers(N_TWIN + N_SPLIT, N_NARROW, n_own))),
                        shape=(n_tok, N_NARROW))
    narrow = (wide @ T + own).tocsr()
    narrow.data *= rng.uniform(0.8, 1.2, narrow.data.size).astype(np.float32)
    home = rng.integers(3, VOCAB, N_WIDE)  # each wide latent's favourite token
    strongest = cols[np.arange(n_tok), vals.argmax(1)]
    tokens = np.where(rng.random(n_tok) < 0.7, home[strongest], rng.integers(3, VOCAB, n_tok))
    return wide, narrow, tokens.astype(np.int32)


def write_store(ws: Workspace, name: str, coder: SparseCoder, acts: sp.csr_matrix, tokens_hash: str, *,
                n_windows: int = N_WINDOWS, ctx: int = CTX, shard: int = SHARD, model: str = "synthetic",
                block_windows: int = 4) -> None:
    """Write `acts` [n_windows · ctx, d_sae] as a saelab latent store (ShardBuilder, manifest, stats), densified
    `block_windows` windows at a time (bounded dense memory: block_windows · ctx × d_sae floats)."""
    from saelab.latents.manifest import dictionary_hash

    store = ws.latents(name)
    identity = {"artifact": "latents", "dictionary": name, "dictionary_hash": dictionary_hash(coder),
                "dictionary_class": "SparseCoder", "hookpoint": coder.cfg.hookpoint, "d_in": coder.cfg.d_in,
                "d_sae": coder.cfg.d_sae, "model": {"path": model, "dtype": "float32"},
                "tokens_hash": tokens_hash, "n_windows": n_windows, "ctx_len": ctx, "value_dtype": "bfloat16",
                "shard_windows": shard, "batch_size": 8, "excluded": [], "excluded_note": "synthetic: none"}
    prepare_store(store, identity, overwrite=True)
    records = {}
    for s, w0 in enumerate(range(0, n_windows, shard)):
        b = ShardBuilder(s, w0, w0 + shard, coder.cfg.d_sae, ctx, torch.bfloat16)
        for w in range(w0, w0 + shard, block_windows):
            dense = torch.from_numpy(acts[w * ctx : (w + block_windows) * ctx].toarray())
            coords = torch.stack(torch.meshgrid(torch.arange(w, w + block_windows), torch.arange(ctx),
                                                indexing="ij"), -1)
            b.add(dense, coords.reshape(-1, 2))
        records[s] = b.write(store)
    write_manifest(manifest_path(store, 0, 1), records, len(records))
    finalize_store(store, identity, len(records))


def synthesise(root: Path, seed: int = 0) -> dict[int, list[int]]:
    rng = np.random.default_rng(seed)
    ws = Workspace(root)
    narrow_dirs, wide_dirs, truth = directions(rng)
    wide_acts, narrow_acts, tokens = activations(rng, truth)
    tok = torch.from_numpy(tokens.reshape(N_WINDOWS, CTX))
    config = TokenizeConfig(ctx_len=CTX, n_tokens=N_WINDOWS * CTX, exclude=())
    cfg = {"artifact": "tokens", "tokens_hash": hash_tokens(tok), "ctx_len": CTX, "n_tokens": N_WINDOWS * CTX,
           "seed": seed, "exclude": [], "special_ids": [], "bos_id": None, "model": "synthetic"}
    save_token_windows(TokenWindows(tok, torch.zeros_like(tok), [], [], None, config, cfg), ws.tokens)
    for name, dirs, acts in (("full", narrow_dirs, narrow_acts), ("wide24k", wide_dirs, wide_acts)):
        c = SparseCoder(CoderConfig("topk", d_in=D, d_sae=dirs.shape[0], k=K, hookpoint="model.layers.6",
                                    model="smollm2-135m"))
        with torch.no_grad():
            c.W_dec.copy_(torch.from_numpy(dirs))
            c.W_enc.copy_(torch.from_numpy(dirs.T.copy()))
        c.save(ws.dictionary(name))
        write_store(ws, name, c, acts, cfg["tokens_hash"])
    (root / "truth.json").write_text(json.dumps({str(k): v for k, v in truth.items()}))
    return truth


# -- the seed's approach ---------------------------------------------------------------------------
class SeedFeatureMatcher:
    """The seed's FeatureMatcher as issue #7 describes it: random candidates, per-candidate loads."""

    def __init__(self, source: LatentStore, target: LatentStore, tokens: np.ndarray, seed: int = 0) -> None:
        self.source, self.target, self.tokens = source, target, tokens.reshape(-1)
        self.rng = np.random.default_rng(seed)

    def _top_tokens(self, e, k: int = 20) -> tuple[set[int], np.ndarray, np.ndarray]:
        keys = e.windows * CTX + e.positions
        top = np.argsort(-e.values, kind="stable")[:k]
        return set(self.tokens[keys[top]].tolist()), keys, e.values

    def find_matches(self, source_feature: int, n_candidates: int = 500, n_top_matches: int = 10) -> list[tuple]:
        src_tokens, src_keys, src_vals = self._top_tokens(self.source.activations(source_feature))
        out = []
        for c in self.rng.choice(self.target.d_sae, size=n_candidates, replace=False):
            tgt_tokens, tgt_keys, tgt_vals = self._top_tokens(self.target.activations(int(c)))  # reload
            union = src_tokens | tgt_tokens
            jac = len(src_tokens & tgt_tokens) / len(union) if union else 0.0
            _, i, j = np.intersect1d(src_keys, tgt_keys, assume_unique=True, return_indices=True)
            corr = float(np.corrcoef(src_vals[i], tgt_vals[j])[0, 1]) if i.size >= 3 else 0.0  # zeros ignored
            out.append((int(c), 0.5 * jac + 0.5 * (0.0 if np.isnan(corr) else corr), jac, corr))
        out.sort(key=lambda m: -m[1])
        return out[:n_top_matches]


# -- measurements ---------------------------------------------------------------------------------
def measure_ours(ws: Workspace, truth: dict[int, list[int]]) -> dict:
    t0 = time.perf_counter()
    path = run(MatchConfig(), ws, "wide24k", "full")
    all_pairs = time.perf_counter() - t0
    cfg = json.loads((path / "cfg.json").read_text())
    t0 = time.perf_counter()
    matcher = FeatureMatcher(load_context("full", ws), "wide24k")
    load = time.perf_counter() - t0
    hits, times = 0, []
    for i, partners in truth.items():
        t0 = time.perf_counter()
        report = matcher.find_matches(source_feature=i, n_candidates=500, n_top_matches=10)
        times.append(time.perf_counter() - t0)
        hits += report.matches[0].target_feature in partners
    import pyarrow.parquet as pq

    lat = pq.read_table(path / "latents.parquet").to_pandas()
    full = lat[lat.dictionary == "full"].set_index("latent")
    one = sum(int(full.one_to_one_partner[i]) in p for i, p in truth.items())
    fams = {f["parent"] for f in json.loads((path / "families.json").read_text())["families"]}
    split = [i for i, p in truth.items() if len(p) > 1]
    return {"all_pairs_s": round(all_pairs, 2), "timings_s": cfg["timings_s"], "per_source_latent_all_pairs_ms":
            round(1000 * all_pairs / N_NARROW, 2), "matcher_load_s": round(load, 3),
            "find_matches_ms_mean": round(1000 * float(np.mean(times)), 2),
            "find_matches_ms_p95": round(1000 * float(np.quantile(times, 0.95)), 2),
            "recall_at_1": round(hits / len(truth), 4), "one_to_one_recall": round(one / len(truth), 4),
            "family_parents_found": len(fams & set(split)), "family_parents_planted": len(split),
            "family_false_parents": len(fams - set(split)), "headline": cfg["headline"]["text"],
            "counts": cfg["counts"], "chance": cfg["chance"]}


def measure_seed(ws: Workspace, truth: dict[int, list[int]], n_latents: int) -> dict:
    from saelab.data.tokens import load_token_windows

    tokens = load_token_windows(ws.tokens).tokens.numpy()
    seed = SeedFeatureMatcher(LatentStore(ws.latents("full")), LatentStore(ws.latents("wide24k")), tokens)
    sample = np.random.default_rng(1).choice(sorted(truth), size=n_latents, replace=False)
    hits, times = 0, []
    for i in sample:
        t0 = time.perf_counter()
        matches = seed.find_matches(int(i))
        times.append(time.perf_counter() - t0)
        hits += matches[0][0] in truth[int(i)]
    expected = float(np.mean([1 - np.prod([(N_WIDE - len(p) - k) / (N_WIDE - k) for k in range(500)])
                              for p in truth.values()]))
    return {"n_source_latents": n_latents, "per_source_latent_s": round(float(np.mean(times)), 3),
            "recall_at_1": round(hits / n_latents, 4), "recall_bound_500_random": round(expected, 4),
            "all_pairs_extrapolated_s": round(float(np.mean(times)) * N_NARROW, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/saelab-bench-match"))
    ap.add_argument("--seed-latents", type=int, default=20, help="Source latents the (slow) seed approach is timed on.")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "match.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    if not (args.dir / "truth.json").exists():
        synthesise(args.dir)
    truth = {int(k): v for k, v in json.loads((args.dir / "truth.json").read_text()).items()}
    ws = Workspace(args.dir)
    logging.info("inputs ready in %.0f s", time.perf_counter() - t0)
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
              "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "sizes": {"narrow": N_NARROW, "wide": N_WIDE, "d": D, "tokens": N_WINDOWS * CTX, "k": K},
              "ours": measure_ours(ws, truth), "seed": measure_seed(ws, truth, args.seed_latents)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
