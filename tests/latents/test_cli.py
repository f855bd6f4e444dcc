"""`saelab cache` end to end on a tiny model saved to disk, and its one-line user errors."""

from __future__ import annotations

import pytest

from saelab.data.tokens import save_token_windows
from saelab.latents import LatentStore
from saelab.workspace import Workspace

from ..conftest import make_tokenizer, run_cli
from .fixtures import tiny_coders, tiny_lm, tiny_windows


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model_dir = root / "tiny-model"
    tiny_lm().model.save_pretrained(model_dir)
    make_tokenizer().save_pretrained(model_dir)
    ws = Workspace(root / "ws")
    windows = tiny_windows()
    windows.cfg.update({"ctx_len": windows.ctx_len, "n_tokens": windows.n_tokens, "seed": 0,
                        "exclude": list(windows.config.exclude), "special_ids": windows.special_ids, "bos_id": None})
    save_token_windows(windows, ws.tokens)
    for name, coder in tiny_coders().items():
        coder.save(ws.dictionary(name))
    return ws, model_dir


def test_cache_two_dictionaries_in_one_pass(workspace, capsys):
    ws, model_dir = workspace
    code = run_cli("cache", "--dict", "sae_l1", "--dict", f"second={ws.dictionary('sae_l2')}", "--model", model_dir,
                   "--dtype", "float32", "--batch-size", "2", "--shard-windows", "8", "--value-dtype", "float16",
                   "-w", ws.root)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "sae_l1" in out and "second" in out and "mean L0" in out
    for name in ("sae_l1", "second"):
        store = LatentStore(ws.latents(name))
        assert store.n_windows == 40 and len(store.shards) == 5
        assert store.summary()["mean_l0"] > 0
    assert LatentStore(ws.latents("sae_l1")).cfg["mean_l0"] == pytest.approx(5.0)  # top-k, k = 5


@pytest.mark.parametrize("args,needle", [
    (("--dict", "no-such-dictionary"), "--dict: got 'no-such-dictionary'"),
    (("--dict", "sae_l1", "--shard-windows", "3"), "shard_windows: got 3"),
    (("--dict", "sae_l1", "--value-dtype", "float64"), "value_dtype: got 'float64'"),
])
def test_user_mistakes_are_one_line(workspace, capsys, args, needle):
    ws, model_dir = workspace
    assert run_cli("cache", *args, "--model", str(model_dir), "-w", str(ws.root)) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert needle in err and "Traceback" not in err
