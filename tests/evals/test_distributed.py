"""Evaluation under torchrun (gloo, 2 processes) equals one process: counts exactly, float64 sums to 1e-12."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("dist_worker.py")


def _run(out: Path, nproc: int) -> None:
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]
              if nproc > 1 else [sys.executable])
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run([*launch, str(WORKER), str(out)], capture_output=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr.decode()[-3000:]


def _assert_close(a, b, where: str = "") -> None:
    """Integers and strings equal; floats within 1e-12 relative (float64 sums in another order)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and not (isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        assert b == pytest.approx(a, rel=1e-12, abs=1e-15), where
    else:
        assert a == b and type(a) is type(b), where


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single")
    _run(out, 1)
    return out


def test_two_ranks_give_the_metrics_of_one_process(single, tmp_path):
    _run(tmp_path, 2)
    one, two = (json.loads((d / "metrics.json").read_text()) for d in (single, tmp_path))
    assert [m["dictionary"]["name"] for m in one] == ["sae_l1", "sae_l2", "tc", "pca-5"]
    assert one[0]["sparsity"]["n_tokens"] > 0 and one[0]["downstream"]["n_positions"] > 0
    _assert_close(one, two)
    # rank 0 alone wrote the files, and they hold the same figures
    for rel in ("ws/evals/sae_l1/metrics.json", "ws/cmp/comparison.json", "ws/cmp/sae_l1_metrics.json"):
        a, b = (json.loads((d / rel).read_text()) for d in (single, tmp_path))
        a.pop("seconds", None), b.pop("seconds", None)
        _assert_close(a, b, rel)
    assert sorted(p.name for p in (tmp_path / "ws" / "cmp").iterdir()) == \
        sorted(p.name for p in (single / "ws" / "cmp").iterdir())
