"""Co-occurrence shared out by windows: the sum of the shares is the count of one pass, to the byte,
under torchrun (gloo, 2 processes) and for any split of the windows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from saelab.cooc import CoocConfig, count, run
from saelab.cooc.counts import add_pairs, count_dtype, count_windows
from saelab.cooc.synthetic import write_workspace, zipf_entries
from saelab.cooc.windows import build_window_map
from saelab.data.tokens import load_token_windows
from saelab.distributed import block
from saelab.latents.store import LatentStore
from saelab.workspace import Workspace

from .dist_worker import SETTINGS

WORKER = Path(__file__).with_name("dist_worker.py")
CTX, D = 16, 40


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    doc, entries = zipf_entries(n_windows=30, ctx_len=CTX, d_sae=D, l0=3, doc_len=30, topic_size=5, seed=2)
    tokens = np.random.default_rng(0).integers(3, 50, size=doc.shape)
    write_workspace(root, tokens, doc, entries, D, shard_windows=4)  # documents cross shards
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.safetensors"))}


def test_shares_of_windows_sum_to_the_whole_count(synthetic):
    ws = load_token_windows(synthetic / "tokens")
    store = LatentStore(synthetic / "latents" / "synth")
    config = CoocConfig(k=8, chunk_windows=2)
    wmap = build_window_map(ws.doc_index.numpy(), config)
    whole = count_windows(store, wmap, config.chunk_windows)
    for world in (2, 3, wmap.n_windows + 2):  # the last: some ranks have no window at all
        shares = [count_windows(store, wmap, config.chunk_windows, block(wmap.n_windows, r, world))
                  for r in range(world)]
        pairs, diag = shares[0].pairs, shares[0].latent_counts.copy()
        for s in shares[1:]:
            pairs, diag = add_pairs(pairs, s.pairs, count_dtype(wmap.n_windows)), diag + s.latent_counts
        np.testing.assert_array_equal(diag, whole.latent_counts)
        for a in ("indptr", "indices", "data"):
            np.testing.assert_array_equal(getattr(pairs, a), getattr(whole.pairs, a))
    assert count(config, store, ws)[0].pairs.nnz == whole.pairs.nnz > 0


def test_torchrun_two_ranks_write_the_counts_of_one_process(synthetic, tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    for root in (single, double):
        shutil.copytree(synthetic, root)
    for name, config in SETTINGS.items():
        run(config, Workspace(single), "synth", name=name)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(WORKER),
           str(double)]
    done = subprocess.run(cmd, capture_output=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    one, two = _files(single / "cooc"), _files(double / "cooc")
    assert len(one) == 2 * len(SETTINGS) and one == two  # counts and neighbours, byte for byte
    assert not list((double / "cooc").rglob("partial*"))





def pair_scores(upper, latent_counts: np.ndarray, n: int, measure) -> np.ndarray:
    """The straightforward method: float64 [d, d] scores of every co-occurring pair, both triangles, −inf where
    a pair never co-occurs (a score of exactly 0 stays a neighbour)."""
    coo = upper.tocoo()
    dense = np.full(upper.shape, -np.inf)
    dense[coo.row, coo.col] = dense[coo.col, coo.row] = measure(coo.data, latent_counts[coo.row],
                                                                 latent_counts[coo.col], n)
    return dense


def top_k_rows(dense: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k largest scores of the whole matrix at once (float32, as the neighbours file stores them)."""
    from saelab.cooc.metrics import top_k_dense

    index, value = top_k_dense(dense, k)
    return index, value.astype(np.float32)


def test_blockwise_neighbours_equal_the_scored_matrix(synthetic):
    from saelab.cooc.metrics import MEASURES, top_k_neighbours

    ws = load_token_windows(synthetic / "tokens")
    counts, _ = count(CoocConfig(k=8), LatentStore(synthetic / "latents" / "synth"), ws)
    found = top_k_neighbours(counts.pairs, counts.latent_counts, counts.n_windows, 6, block_bytes=8 * D * 3)
    for name, measure in MEASURES.items():
        index, score = top_k_rows(pair_scores(counts.pairs, counts.latent_counts, counts.n_windows, measure), 6)
        np.testing.assert_array_equal(found[name][0], index)
        np.testing.assert_array_equal(found[name][1], score)
