"""Many steps from few forwards: the activation buffer, epochs over it, the held-out log, resume."""

from __future__ import annotations

import json

import pytest
import torch

from saelab.activations.buffer import ActivationBuffer, write_buffer
from saelab.errors import ConfigError
from saelab.train.source import tensor_reader

from .fixtures import config, fit_sparse


def _counting(read):
    calls = []

    def counted(lo, hi):
        calls.append((lo, hi))
        return read(lo, hi)

    return counted, calls


def test_buffer_holds_the_text_positions(sparse, tmp_path):
    read = tensor_reader(sparse.acts, sparse.mask)
    buf = write_buffer(tmp_path / "b", read, 0, 100, {"id": 1}, ctx_len=32, chunk_windows=16, progress=False)
    want = sparse.acts["x"][:100][sparse.mask[:100]]
    assert buf.n_rows == want.shape[0]
    torch.testing.assert_close(buf.rows("x", torch.arange(buf.n_rows)), want, rtol=0, atol=0)


def test_buffer_resumes_after_a_crash_and_is_reused(sparse, tmp_path):
    read = tensor_reader(sparse.acts, sparse.mask)

    def crashing(lo, hi):
        if lo >= 48:
            raise KeyboardInterrupt
        return read(lo, hi)

    with pytest.raises(KeyboardInterrupt):
        write_buffer(tmp_path / "b", crashing, 0, 100, {"id": 1}, ctx_len=32, chunk_windows=16, progress=False)
    cfg = json.loads((tmp_path / "b" / "cfg.json").read_text())
    assert cfg["windows_done"] == 48 and not cfg["complete"]
    counted, calls = _counting(read)
    buf = write_buffer(tmp_path / "b", counted, 0, 100, {"id": 1}, ctx_len=32, chunk_windows=16, progress=False)
    assert calls[0] == (48, 64)  # the finished chunks are not read again
    want = sparse.acts["x"][:100][sparse.mask[:100]]
    torch.testing.assert_close(buf.rows("x", torch.arange(buf.n_rows)), want, rtol=0, atol=0)
    counted, calls = _counting(read)
    write_buffer(tmp_path / "b", counted, 0, 100, {"id": 1}, ctx_len=32, chunk_windows=16, progress=False)
    assert calls == []  # finished: reused as it is


def test_bfloat16_activations_round_trip(tmp_path):
    acts = {"x": torch.randn(8, 4, 16).to(torch.bfloat16)}
    mask = torch.ones(8, 4, dtype=torch.bool)
    buf = write_buffer(tmp_path / "b", tensor_reader(acts, mask), 0, 8, {}, ctx_len=4, progress=False)
    assert buf.dtype == "bfloat16" and (tmp_path / "b" / "x.npy").stat().st_size < 8 * 4 * 16 * 4
    torch.testing.assert_close(buf.rows("x", torch.arange(32)), acts["x"].reshape(32, 16).float(), rtol=0, atol=0)


def test_unfinished_buffer_is_not_read(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "cfg.json").write_text(json.dumps({"artifact": "activation_buffer", "complete": False}))
    from saelab.errors import ArtifactError

    with pytest.raises(ArtifactError, match="not a finished activation buffer"):
        ActivationBuffer(tmp_path / "b")


def test_epochs_read_the_model_once(sparse, tmp_path):
    read = tensor_reader(sparse.acts, sparse.mask)
    counted, calls = _counting(read)
    cfg = config(epochs=3.0)
    from saelab.train.run import train

    widths = {name: int(a.shape[-1]) for name, a in sparse.acts.items()}
    trainers, state = train(cfg, counted, {"x": "x", "y": "y"}, widths, (0, 64), tmp_path / "run", ctx_len=32,
                            fingerprint_extra={}, progress=False, heldout_range=(64, 72))
    assert sum(hi - lo for lo, hi in calls if hi <= 64) == 64  # each training window read once
    per_epoch = -(-int(sparse.mask[:64].sum()) // (4 * 32))
    assert state.step == 3 * per_epoch == trainers["sae"].n_steps
    log = [json.loads(ln) for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    held = [r for r in log if "heldout_fvu" in r]
    assert len(held) >= 10 and held[-1]["step"] == state.step
    assert held[-1]["heldout_fvu"] < held[0]["heldout_fvu"]  # it learns
    assert held[-1]["decoder_cos_init"] < held[0]["decoder_cos_init"] <= 1.0  # and the decoder moves
    final = trainers["sae"].summary()
    assert final["heldout_fvu"] == held[-1]["heldout_fvu"] and final["decoder_cos_init"] is not None


def test_steps_override_epochs(sparse, tmp_path):
    trainers, state = fit_sparse(sparse, config(steps=7, epochs=5.0), tmp_path, n_windows=64)
    assert state.step == 7


def test_buffered_resume_equals_uninterrupted(sparse, tmp_path):
    cfg = config(epochs=2.5, checkpoint_every=3)
    whole, _ = fit_sparse(sparse, cfg, tmp_path / "a", n_windows=64)
    fit_sparse(sparse, cfg, tmp_path / "b", n_windows=64, until_step=5)
    resumed, state = fit_sparse(sparse, cfg, tmp_path / "b", n_windows=64, resume=True)
    for (name, a), b in zip(whole["sae"].coder.named_parameters(), resumed["sae"].coder.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("kw", [dict(epochs=0), dict(epochs=True), dict(steps=0), dict(heldout_windows=-1),
                                dict(lr_scale=0), dict(eval_every=0)])
def test_bad_pass_settings(kw):
    with pytest.raises(ConfigError, match=next(iter(kw))):
        config(**kw)
