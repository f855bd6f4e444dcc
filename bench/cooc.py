"""Co-occurrence counts: saelab's sparse method vs SFAL's dense d×d histogram.

SFAL (Crisp-Unimib/SFAL `1_cooc_matrix/utils.py::update_cooc_histogram`) keeps an int32
[d_sae, d_sae] histogram and, for every full k-token chunk of every document, adds
`torch.outer(any(chunk), any(chunk)).int()`. That loop is reimplemented here as it is
(torch, CPU, int32); its clock covers only the any / outer / add per window, not building
the dense [k, d_sae] chunk from the store (SFAL gets it from the SAE encoder). saelab's
clock covers `saelab.cooc.count` end to end: reading the store, cutting windows inside
documents, BᵀB, the sparse result.

Stores: synthetic (saelab.cooc.synthetic.zipf_entries), the same documents and tokens at
every width: L0 = 32 latents per token, half from a 64-latent "topic" per document and
half from a Zipf(1.1) law over all latents; documents of exponential length (mean 600
tokens); ctx 256; k = 256, non-overlapping windows, partial windows dropped (SFAL's rule).

The dense method costs the same for every window (d² adds), so where it would run for
too long it is timed on the first `--dense-windows` windows and scaled linearly to N, and
at 65,536 latents (a 17.2 GB int32 histogram, more than this machine can spare) on a slab
of `--slab-rows` histogram rows and scaled by d / rows. Counts are compared exactly on
what the dense method computed (all windows at 2K; the timed prefix, or the slab rows,
elsewhere) against saelab's counts on the same windows. Each side runs in its own
process; peak RSS from `os.wait4`.

    flock /tmp/saelab-cpu.lock .venv/bin/python bench/cooc.py [--sizes 2048 16384 65536] [--tokens 32768]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

K, CTX = 256, 256


def make_workspace(root: Path, d_sae: int, tokens: int, seed: int = 0) -> Path:
    from saelab.cooc.synthetic import write_workspace, zipf_entries

    ws = root / f"d{d_sae}"
    if (ws / "latents" / "synth" / "cfg.json").exists():
        return ws
    doc, entries = zipf_entries(tokens // CTX, CTX, d_sae, l0=32, seed=seed)
    ids = np.random.default_rng(seed).integers(3, 49_152, size=doc.shape)
    write_workspace(ws, ids, doc, entries, d_sae, shard_windows=64)
    return ws


def sfal_windows(doc: np.ndarray, k: int) -> list[tuple[int, int]]:
    """SFAL's chunks: per document, [j, j + k) for j = 0, k, 2k, ... while j + k ≤ length."""
    flat = doc.reshape(-1)
    bounds = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1], True])
    return [(a + j, a + j + k) for a, b in zip(bounds[:-1], bounds[1:]) for j in range(0, b - a, k) if j + k <= b - a]


def worker_sfal(ws: Path, max_windows: int, rows: int, out: Path) -> dict:
    import scipy.sparse as sp
    import torch

    from saelab.data.tokens import load_token_windows
    from saelab.latents.store import LatentStore

    torch.set_num_threads(2)
    store = LatentStore(ws / "latents" / "synth")
    acts = sp.vstack([s.matrix for s in store.iter_csr()]).tocsr()  # [positions, d_sae]
    windows = sfal_windows(load_token_windows(ws / "tokens").doc_index.numpy(), K)
    todo = windows[:max_windows]
    d = store.d_sae
    histogram = torch.zeros((rows, d), dtype=torch.int32)  # SFAL: int32 [d_sae, d_sae]
    seconds = 0.0
    for a, b in todo:
        chunk = torch.from_numpy((acts[a:b].toarray() > 0).astype(np.float32))  # binary_acts[j:j+k]
        t0 = time.perf_counter()
        chunk_features = torch.any(chunk, dim=0)
        histogram += torch.outer(chunk_features[:rows], chunk_features).int()
        seconds += time.perf_counter() - t0
    h = histogram.numpy()
    r, c = np.nonzero(h)
    np.savez(out, row=r, col=c, val=h[r, c], end=todo[-1][1])
    return {"seconds_measured": seconds, "windows_measured": len(todo), "n_windows": len(windows), "rows": rows,
            "prefix_end": int(todo[-1][1])}


def worker_saelab(ws: Path, prefix_end: int, out: Path) -> dict:
    from saelab.cooc import CoocConfig, count
    from saelab.data.tokens import load_token_windows
    from saelab.latents.store import LatentStore

    store, windows = LatentStore(ws / "latents" / "synth"), load_token_windows(ws / "tokens")
    t0 = time.perf_counter()
    counts, _ = count(CoocConfig(k=K), store, windows)
    seconds = time.perf_counter() - t0
    prefix, _ = count(CoocConfig(k=K, n_tokens=prefix_end), store, windows)  # untimed: for the equality check
    p = prefix.pairs
    np.savez(out, indptr=p.indptr, indices=p.indices, data=p.data, diag=prefix.latent_counts, n=prefix.n_windows)
    return {"seconds": seconds, "n_windows": counts.n_windows, "n_pairs": int(counts.pairs.nnz),
            "bytes_pairs": int(counts.pairs.data.nbytes + counts.pairs.indices.nbytes + counts.pairs.indptr.nbytes)}


def same_counts(saelab_npz: Path, sfal_npz: Path, rows: int) -> bool:
    """saelab's C (rows [0, rows), all columns) equals the dense histogram, entry for entry."""
    import scipy.sparse as sp

    s, f = np.load(saelab_npz), np.load(sfal_npz)
    d = s["diag"].size
    upper = sp.csr_matrix((s["data"], s["indices"], s["indptr"]), shape=(d, d))
    full = (upper + upper.T + sp.diags(s["diag"], dtype=np.int64)).tocsr()[:rows].tocoo()
    ours = sorted(zip(full.row.tolist(), full.col.tolist(), full.data.tolist()))
    theirs = sorted(zip(f["row"].tolist(), f["col"].tolist(), f["val"].tolist()))
    return ours == theirs


def run_worker(args: list[str]) -> tuple[dict, float]:
    """Run this script as a worker process; (its JSON answer, its peak RSS in GB)."""
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"worker {args} failed with status {status}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1e6


def bench_size(root: Path, d: int, tokens: int, dense_windows: int, slab_rows: int) -> dict:
    ws = make_workspace(root, d, tokens)
    rows = d if d <= 16384 else slab_rows
    sfal_npz, saelab_npz = root / f"sfal-{d}.npz", root / f"saelab-{d}.npz"
    theirs, theirs_rss = run_worker(["--worker", "sfal", str(ws), str(dense_windows), str(rows), str(sfal_npz)])
    ours, ours_rss = run_worker(["--worker", "saelab", str(ws), str(theirs["prefix_end"]), str(saelab_npz)])
    scale = (theirs["n_windows"] / theirs["windows_measured"]) * (d / rows)
    sfal_seconds = theirs["seconds_measured"] * scale
    row = {"d_sae": d, "N": ours["n_windows"], "saelab_s": ours["seconds"], "saelab_rss_gb": ours_rss,
           "saelab_pairs": ours["n_pairs"], "saelab_pairs_gb": ours["bytes_pairs"] / 1e9,
           "sfal_s": sfal_seconds, "sfal_measured": theirs, "sfal_rss_gb": theirs_rss,
           "sfal_histogram_gb": d * d * 4 / 1e9, "extrapolated": scale != 1.0,
           "speedup": sfal_seconds / ours["seconds"], "same_counts": same_counts(saelab_npz, sfal_npz, rows),
           "compared": f"{theirs['windows_measured']} windows × {rows} rows"}
    print(json.dumps(row), flush=True)
    return row


def markdown_table(results: list[dict]) -> str:
    lines = ["| latents | N windows | saelab s | SFAL dense s | speed-up | saelab peak RSS | SFAL peak RSS "
             "(histogram alone) | pairs stored (MB) | same counts (compared on) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        star = " (extrapolated)" if r["extrapolated"] else ""
        lines.append(f"| {r['d_sae']:,} | {r['N']:,} | {r['saelab_s']:.2f} | {r['sfal_s']:.1f}{star} | "
                     f"{r['speedup']:.0f}× | {r['saelab_rss_gb']:.2f} GB | {r['sfal_rss_gb']:.2f} GB "
                     f"({r['sfal_histogram_gb']:.2f} GB) | {r['saelab_pairs_gb'] * 1e3:.0f} | "
                     f"{'yes' if r['same_counts'] else 'NO'} ({r['compared']}) |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[2048, 16384, 65536])
    p.add_argument("--tokens", type=int, default=32768)
    p.add_argument("--dense-windows", type=int, default=10**9, help="dense method: windows timed (then scaled to N)")
    p.add_argument("--slab-rows", type=int, default=2048)
    p.add_argument("--dir", type=Path, default=Path("/tmp/saelab-bench-cooc"))
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("cooc.json"))
    p.add_argument("--worker", nargs="+")
    a = p.parse_args()
    if a.worker:
        kind, ws, *rest = a.worker
        if kind == "sfal":
            print(json.dumps(worker_sfal(Path(ws), int(rest[0]), int(rest[1]), Path(rest[2]))))
        else:
            print(json.dumps(worker_saelab(Path(ws), int(rest[0]), Path(rest[1]))))
        return
    a.dir.mkdir(parents=True, exist_ok=True)
    results = [bench_size(a.dir, d, a.tokens, a.dense_windows if d > 2048 else 10**9, a.slab_rows) for d in a.sizes]
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
            "cpus": os.cpu_count(), "tokens": a.tokens, "k": K, "load_avg_start": os.getloadavg()}
    a.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n", encoding="utf-8")
    print(markdown_table(results))


if __name__ == "__main__":
    main()
