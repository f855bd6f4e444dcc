"""The run loop: exact resume from checkpoints, several dictionaries from one stream."""

from __future__ import annotations

import json

import pytest
import torch

from saelab.errors import ArtifactError
from saelab.train.run import train
from saelab.train.source import tensor_reader

from .fixtures import config, fit_sparse, spec


def _log(path):
    return [{k: v for k, v in json.loads(ln).items() if k != "tokens_per_s"} for ln in path.read_text().splitlines()]


@pytest.mark.parametrize("architecture", ["topk", "batchtopk"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(sparse, tmp_path, architecture):
    # 64 windows, 16 per chunk, 4 per step: 16 steps; checkpoint every 6 steps, so the one at
    # step 12 sits inside the third chunk, and AuxK is active (dead_tokens small)
    cfg = config(spec(architecture=architecture), spec(name="wide", d_sae=256), checkpoint_every=6,
                 log_every=1, dead_tokens=300)
    full, full_state = fit_sparse(sparse, cfg, tmp_path / "full", n_windows=64)
    _, cut_state = fit_sparse(sparse, cfg, tmp_path / "cut", n_windows=64, until_step=14)  # "crashes" at 14
    assert cut_state.step == 14
    resumed, state = fit_sparse(sparse, cfg, tmp_path / "cut", n_windows=64, resume=True)
    assert state == full_state
    for name in full:
        a, b = full[name], resumed[name]
        for key, tensor in a.coder.state_dict().items():
            assert torch.equal(tensor, b.coder.state_dict()[key]), (name, key)
        assert torch.equal(a.tokens_since_fired, b.tokens_since_fired)
        assert a.summary() == b.summary()
        assert str(a.optimizer.state_dict()) == str(b.optimizer.state_dict())
    assert _log(tmp_path / "full" / "log.jsonl") == _log(tmp_path / "cut" / "log.jsonl")


def test_resume_refuses_another_config(sparse, tmp_path):
    fit_sparse(sparse, config(checkpoint_every=2), tmp_path, n_windows=16, until_step=4)
    with pytest.raises(ArtifactError, match="another config"):
        fit_sparse(sparse, config(checkpoint_every=2, lr=1e-3), tmp_path, n_windows=16, resume=True)


def test_several_dictionaries_train_from_one_stream(sparse, tmp_path):
    reads = []
    read = tensor_reader(sparse.acts, sparse.mask)

    def counting_read(lo, hi):
        reads.append((lo, hi))
        return read(lo, hi)

    cfg = config(spec(name="narrow", d_sae=64), spec(name="wide", d_sae=256),
                 spec(name="batch", d_sae=128, architecture="batchtopk"), spec(name="tc", out_hookpoint="y"),
                 log_every=1, lr=3e-3)
    trainers, state = train(cfg, counting_read, {"x": "x", "y": "y"}, {"x": 32, "y": 24}, (0, 256), tmp_path,
                            ctx_len=32, fingerprint_extra={}, progress=False)
    # every window was read exactly once, for all four dictionaries
    assert sorted(reads) == [(lo, lo + 16) for lo in range(0, 256, 16)]
    assert state.step == 64 and all(t.n_steps == 64 for t in trainers.values())
    assert {t.n_tokens for t in trainers.values()} == {state.text_tokens} == {256 * 31}
    log = [json.loads(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    for name, t in trainers.items():  # every dictionary learned from the shared stream
        first = next(r["fvu"] for r in log if r["dictionary"] == name)
        assert t.summary()["fvu"] < 0.7 * first, name


def test_excluded_positions_never_reach_the_trainer(sparse, tmp_path):
    # position 0 of each window is 10x louder than the rest and masked out
    trainers, state = fit_sparse(sparse, config(b_dec_init="mean", lr_warmup_steps=1), tmp_path, n_windows=4)
    assert state.text_tokens == 4 * 31 and trainers["sae"].n_tokens == 4 * 31
    text = sparse.acts["x"][:4][sparse.mask[:4]]
    assert trainers["sae"].coder.b_dec.norm() < 2 * text.mean(0).norm()


def test_a_truncated_or_foreign_checkpoint_is_one_line_that_says_how_to_go_on(tmp_path):
    import torch

    from saelab.errors import ArtifactError
    from saelab.train.checkpoint import read_checkpoint

    path = tmp_path / "checkpoint.pt"
    torch.save({"state": {}, "fingerprint": "f", "trainers": {}, "torch_rng": torch.get_rng_state()}, path)
    assert read_checkpoint(path)["fingerprint"] == "f"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ArtifactError, match="is truncated or damaged .*--overwrite") as e:
        read_checkpoint(path)
    assert "\n" not in str(e.value)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ArtifactError, match="not a saelab training checkpoint"):
        read_checkpoint(path)
