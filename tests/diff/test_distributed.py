"""The diff pipeline under torchrun (gloo, 2 processes): each rank writes its block of paired-activation shards,
the crosscoder trains data-parallel, rank 0 alone writes the rest; the artifacts equal a single-process run's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ..conftest import corpus_file
from ._pair import CHANGED_LAYER

WORKER = Path(__file__).with_name("worker_pipeline.py")
LAYER_DIR = f"features/layer_{CHANGED_LAYER:02d}"


def _run(out: Path, corpus: Path, ranks: int) -> None:
    cmd = [sys.executable, str(WORKER), str(out), str(corpus)]
    if ranks > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
               *cmd[1:]]
    done = subprocess.run(cmd, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("diff-ranks")
    corpus = corpus_file(d)
    _run(d / "one", corpus, 1)
    _run(d / "two", corpus, 2)
    return d / "one", d / "two"


def test_paired_activation_shards_are_byte_identical(runs):
    one, two = runs
    shards = sorted(p.relative_to(one) for p in (one / "activations").rglob("*.safetensors"))
    assert len(shards) > 1  # both ranks had shards to write
    assert shards == sorted(p.relative_to(two) for p in (two / "activations").rglob("*.safetensors"))
    for rel in shards:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel
    assert (one / "activations/manifest.json").read_text() == (two / "activations/manifest.json").read_text()


def test_the_crosscoder_and_the_report_match_the_single_process_run(runs):
    one, two = runs
    a = load_file(str(one / LAYER_DIR / "crosscoder/weights.safetensors"))
    b = load_file(str(two / LAYER_DIR / "crosscoder/weights.safetensors"))
    assert a.keys() == b.keys()
    for key in a:  # data-parallel: the same global batches, sums in another order
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
    assert (two / "reports/report.md").exists() and (two / LAYER_DIR / "latent_table.json").exists()
    assert not list(two.rglob("checkpoint.rank-*"))
