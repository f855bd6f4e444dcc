"""Training under torchrun: gloo, 2 processes on the CPU (`dist_worker.py`), against the same runs on one process.

Data parallel is the one-process run up to float32 rounding: the ranks' losses share the whole batch's variance,
BatchTopK selects over the whole batch, dead-latent counts and thresholds are the whole batch's and gradients are
summed. Measured (16 steps of four 48-latent dictionaries with AuxK active, 30 buffered steps, 15 crosscoder
steps, 12 synthetic steps): the largest weight difference is 1.7e-6 (a buffered transcoder's W_dec, 4e-6 of its
largest weight), most are about 1e-7; the integer state (dead-latent counters, steps, tokens) is equal.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from saelab.errors import ArtifactError, ConfigError
from saelab.train.parallel import rank_dictionaries

from . import dist_worker as worker

WORKER = Path(worker.__file__)
ATOL, RTOL = 2e-5, 1e-4
"""float32 weights after 12-30 steps; the measured differences are 10-100x below this."""


TEARDOWN_ABORT = "terminate called without an active exception"
"""About one launch in ten on the loaded 2-core test machine, a gloo rank aborts with this once its work is done
(seen with and without destroy_process_group after a final barrier); such a launch is retried once, any other
failure fails the test."""


def _torchrun(out: Path, phase: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(WORKER),
           str(out), phase]
    return subprocess.run(cmd, capture_output=True, timeout=240)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """Every run of the worker on 2 ranks, then the killed run resumed by a second torchrun."""
    for attempt in range(2):
        out = tmp_path_factory.mktemp("two-ranks")
        for phase in ("first", "resume"):
            done = _torchrun(out, phase)
            if done.returncode:
                break
        else:
            return out
        assert attempt == 0 and TEARDOWN_ABORT in done.stderr.decode(), done.stderr.decode()[-3000:]
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory) -> dict[str, torch.Tensor]:
    """The same runs on this one process (no process group)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("one-rank")
    ref = worker.sae_run(out / "sae")
    ref.update({f"buffered.{k}": v for k, v in worker.sae_run(out / "buffered", worker.sae_config(epochs=2.0),
                                                              buffer_dir=out / "buffer").items()})
    ref.update(worker.crosscoder_run(out / "crosscoder"))
    for parallel in ("data", "dictionaries"):
        ref.update({f"{parallel}.{k}": v for k, v in worker.synth_run(out, parallel).items()})
    torch.set_num_threads(before)
    return ref


def _assert_close(two: dict[str, torch.Tensor], one: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> None:
    keys = [k for k in one if k.startswith(prefixes)]
    assert keys and set(keys) == {k for k in two if k.startswith(prefixes)}
    for key in keys:
        if one[key].dtype.is_floating_point:
            torch.testing.assert_close(two[key], one[key], atol=ATOL, rtol=RTOL, msg=key)
        else:
            assert torch.equal(two[key], one[key]), key


SAE = ("topk.", "batchtopk.", "matryoshka.", "transcoder.", "step", "text_tokens", "buffered.")


def test_data_parallel_trains_the_one_process_weights(two_ranks, one_rank):
    two = torch.load(two_ranks / "first.pt")
    _assert_close(two, one_rank, SAE)
    assert int(two["topk.aux_steps"]) > 0 and int(two["transcoder.aux_steps"]) > 0  # AuxK trained dead latents
    assert float(two["batchtopk.threshold"]) > 0 and float(two["matryoshka.threshold"]) > 0
    _assert_close(two, one_rank, ("data.",))  # run_synthetic: every rank draws the step, keeps its rows


def test_crosscoder_data_parallel_trains_the_one_process_weights(two_ranks, one_rank):
    _assert_close(torch.load(two_ranks / "first.pt"), one_rank, ("crosscoder.",))
    assert (two_ranks / "crosscoder" / "cfg.json").exists() and not list((two_ranks / "crosscoder").glob("*rank-*"))


def test_distributed_dictionaries_train_each_as_one_process_does(two_ranks, one_rank):
    two = torch.load(two_ranks / "first.pt")
    keys = [k for k in one_rank if k.startswith("dictionaries.")]
    assert {k.split(".")[1] for k in keys} == {"s0", "s1", "s2"}
    for key in keys:  # each dictionary trained whole on one rank: the same operations, bit for bit
        assert torch.equal(two[key], one_rank[key]), key
    run_dir = two_ranks / "ws-dictionaries" / "train" / "s0"
    assert (run_dir / "checkpoint.pt").exists() and (run_dir / "checkpoint.rank-1.pt").exists()
    logged = {json.loads(ln)["dictionary"] for ln in (run_dir / "log.rank-1.jsonl").read_text().splitlines()}
    assert logged == {"s1"}  # rank 1 trains every second dictionary


def test_a_killed_run_resumes_to_the_uninterrupted_weights(two_ranks):
    full, resumed = torch.load(two_ranks / "first.pt"), torch.load(two_ranks / "resume.pt")
    assert int(resumed["step"]) == int(full["step"]) > worker.UNTIL_STEP
    for key, value in resumed.items():  # resumed from step 6 by new processes: the same operations again
        assert torch.equal(value, full[key]), key


def test_resume_on_another_rank_count_is_refused(two_ranks):
    with pytest.raises(ArtifactError, match=r"on 2 rank\(s\), and this run has 1.*--nproc_per_node 2.*--overwrite"):
        worker.sae_run(two_ranks / "sae", resume=True)


def test_refusals_reach_every_rank(two_ranks):
    errors = [json.loads((two_ranks / f"errors.rank-{r}.json").read_text()) for r in (0, 1)]
    assert errors[0] == errors[1]  # rank 0 found the other run's checkpoint under its lock; rank 1 got its error
    assert errors[0]["too_many_ranks"].startswith("ConfigError: --distribute-dictionaries: 2 ranks but 1 dictionar")
    assert "ArtifactError" in errors[0]["other_run"] and "config.seed: 5 → 6" in errors[0]["other_run"]


def test_dictionaries_go_round_robin_and_never_to_more_ranks_than_there_are():
    config = worker.synth_config(3)
    assert [s.name for s in rank_dictionaries(config, "dictionaries", 0, 2)] == ["s0", "s2"]
    assert [s.name for s in rank_dictionaries(config, "dictionaries", 1, 2)] == ["s1"]
    assert rank_dictionaries(config, "data", 1, 2) == config.dictionaries
    with pytest.raises(ConfigError, match="--distribute-dictionaries: 3 ranks but 2 dictionaries"):
        rank_dictionaries(worker.synth_config(2), "dictionaries", 0, 3)
    with pytest.raises(ConfigError, match="parallel"):
        rank_dictionaries(config, "model", 0, 2)  # type: ignore[arg-type]


def test_torchrun_saelab_train_matches_one_process(tiny_llama, tmp_path):
    """`torchrun -m saelab train` end to end: rank 0 makes the token windows, each rank loads the model and reads
    its windows, one summary is printed; the dictionary is the one-process one (selected in the machine's
    encoder dtype: bfloat16 on some, so the tolerance allows a rounding more)."""
    from saelab.coders import SparseCoder

    from ..conftest import corpus_file, run_cli, save_model

    model, corpus = save_model(tiny_llama, tmp_path / "model"), corpus_file(tmp_path, 120)
    args = ["train", "-m", model, "--corpus", str(corpus), "--ctx-len", "32", "--n-tokens", "512", "-H",
            "resid_post.1", "--d-sae", "64", "--k", "4", "--batch-size", "4", "--name", "tiny", "--dtype", "float32",
            "--heldout-windows", "2"]
    assert run_cli(*args, "-w", tmp_path / "one") == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "saelab",
           *args, "-w", str(tmp_path / "two")]
    done = subprocess.run(cmd, capture_output=True, timeout=240)
    if done.returncode and TEARDOWN_ABORT in done.stderr.decode():
        done = subprocess.run(cmd, capture_output=True, timeout=240)  # a fresh run over the same workspace resumes
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert done.stdout.decode().count("held-out FVU") == 1  # the summary, from rank 0 alone
    one, two = (SparseCoder.load(tmp_path / ws / "dictionaries" / "tiny") for ws in ("one", "two"))
    for key, value in one.state_dict().items():
        torch.testing.assert_close(two.state_dict()[key], value, atol=1e-4, rtol=1e-3, msg=key)
