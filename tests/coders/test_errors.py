"""Bad input: one-line FormatErrors that name the file, what was found and what was expected."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from saelab.coders import load_dictionary
from saelab.errors import FormatError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def copy_fixture(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / Path(name).name))


def expect(path, match: str, **kwargs) -> str:
    with pytest.raises(FormatError, match=match) as info:
        load_dictionary(path, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_unknown_directory_says_what_it_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    msg = expect(tmp_path, "not a dictionary in any known format")
    for files in ("cfg.json + weights.safetensors", "cfg.json + sae_weights.safetensors", "cfg.json + sae.safetensors",
                  "ae.pt", "params.npz"):
        assert files in msg
    expect(tmp_path / "missing", "does not exist")


def test_truncated_safetensors(tmp_path):
    for name, weights in (("saelens/topk", "sae_weights.safetensors"), ("sparsify/run/layers.3", "sae.safetensors")):
        d = copy_fixture(tmp_path, name)
        data = (d / weights).read_bytes()
        (d / weights).write_bytes(data[: len(data) // 2])
        expect(d, rf"{weights}: not a readable safetensors file .*truncated or corrupt")


def test_corrupt_npz(tmp_path):
    d = copy_fixture(tmp_path, "gemmascope/layer_3/width_256/average_l0_20")
    data = (d / "params.npz").read_bytes()
    (d / "params.npz").write_bytes(data[: len(data) // 3])
    expect(d, r"params.npz: not a readable npz file")


def test_npz_missing_arrays(tmp_path):
    np.savez(tmp_path / "params.npz", W_enc=np.zeros((4, 8), np.float32))
    expect(tmp_path, r"params.npz: missing W_dec, b_enc, b_dec, threshold")


def test_pickle_that_is_not_a_state_dict_is_refused_unopened(tmp_path):
    d = copy_fixture(tmp_path, "dictionary_learning/topk")
    torch.save({"ae": torch.nn.Linear(2, 2)}, d / "ae.pt")  # a whole module: needs arbitrary unpickling
    expect(d, r"ae.pt: not a plain state dict — torch.load\(weights_only=True\) refused it")


def test_truncated_torch_file(tmp_path):
    d = copy_fixture(tmp_path, "dictionary_learning/relu")
    data = (d / "ae.pt").read_bytes()
    (d / "ae.pt").write_bytes(data[:1000])
    expect(d, r"ae.pt: not a readable torch file")


def test_d_in_mismatch_between_config_and_weights(tmp_path):
    d = copy_fixture(tmp_path, "saelens/standard")
    cfg = json.loads((d / "cfg.json").read_text())
    (d / "cfg.json").write_text(json.dumps({**cfg, "d_in": 65}))
    expect(d, r"sae_weights.safetensors: tensor W_enc has shape \[64, 256\]; expected \[65, 256\]")
    s = copy_fixture(tmp_path, "sparsify/run/layers.3")
    cfg = json.loads((s / "cfg.json").read_text())
    (s / "cfg.json").write_text(json.dumps({**cfg, "d_in": 32}))
    expect(s, r"encoder.weight is \[256, 64\] but cfg.json says d_in=32")


def test_unsupported_architectures_are_named(tmp_path):
    d = copy_fixture(tmp_path, "saelens/standard")
    cfg = json.loads((d / "cfg.json").read_text())
    (d / "cfg.json").write_text(json.dumps({**cfg, "architecture": "gated"}))
    expect(d, r"architecture 'gated' is not supported; saelab reads SAELens standard, jumprelu, topk")
    (d / "cfg.json").write_text(json.dumps({**cfg, "normalize_activations": "layer_norm"}))
    expect(d, r"normalize_activations='layer_norm' is not supported")
    dl = copy_fixture(tmp_path, "dictionary_learning/relu")
    (dl / "config.json").write_text(json.dumps({"trainer": {"dict_class": "GatedAutoEncoder"}}))
    expect(dl, r"dictionary class 'GatedAutoEncoder' is not supported")


def test_invalid_json_config(tmp_path):
    d = copy_fixture(tmp_path, "sparsify/run/layers.3")
    (d / "cfg.json").write_text("{not json")
    expect(d, r"cfg.json: not valid JSON")


def test_dictionary_learning_without_config_infers_only_unambiguous_classes(tmp_path):
    relu = copy_fixture(tmp_path, "dictionary_learning/relu")
    (relu / "config.json").unlink()
    assert load_dictionary(relu).cfg.architecture == "relu"
    topk = copy_fixture(tmp_path, "dictionary_learning/batchtopk")
    (topk / "config.json").unlink()
    expect(topk, r"dictionary class 'no config.json' is not supported")
