"""`--dtype auto`: bf16 only where the device multiplies bf16 matrices fast; float32 elsewhere."""

from __future__ import annotations

import pytest
import torch

from saelab.errors import ConfigError
from saelab.models import load as L


@pytest.fixture(autouse=True)
def _fresh():
    L.cpu_bf16.cache_clear()
    yield
    L.cpu_bf16.cache_clear()


@pytest.mark.parametrize("flags, expected", [({"avx2", "fma"}, torch.float32),
                                             ({"avx2", "avx512f", "avx512_bf16"}, torch.bfloat16),
                                             ({"avx2", "amx_tile", "amx_bf16"}, torch.bfloat16)])
def test_auto_reads_the_cpu_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(L, "_cpu_flags", lambda: flags)
    assert L.parse_dtype("auto") == expected
    fast, why = L.cpu_bf16()
    assert fast == (expected == torch.bfloat16) and ("lacks" in why) != fast


def test_without_flags_auto_measures_and_says_so(monkeypatch):
    monkeypatch.setattr(L, "_cpu_flags", lambda: None)
    fast, why = L.cpu_bf16()
    assert why.startswith("bf16 matmul measured at") and L.parse_dtype("auto") in (torch.float32, torch.bfloat16)


def test_explicit_dtypes_are_kept_and_bad_ones_list_auto():
    assert L.parse_dtype("bfloat16") == torch.bfloat16 and L.parse_dtype("fp32") == torch.float32
    with pytest.raises(ConfigError, match="dtype: got .float8.; expected one of: auto, "):
        L.parse_dtype("float8")


def test_one_parser_for_every_spelling():
    """Long and short names, the same dtype; int8 only where the caller loads quantized weights."""
    for short, long in L.SHORT_NAMES.items():
        assert L.dtype_name(short) == L.dtype_name(long) == long
        assert L.parse_dtype(short) is L.parse_dtype(long) is L.DTYPES[long]
    assert L.dtype_name("auto") == "auto" and L.dtype_name("int8", quantizations=L.QUANTIZATIONS) == "int8"
    with pytest.raises(ConfigError, match="--dtype: got 'int8'; expected one of: auto, float32, bfloat16, float16."):
        L.dtype_name("int8", "--dtype")
    with pytest.raises(ConfigError, match="dtype: got 8"):
        L.dtype_name(8)  # type: ignore[arg-type]


def test_the_diff_records_its_dtype_as_before(tmp_path):
    """`--dtype bfloat16` and the seed's `--quantization bf16` are one setting: a diff made before resumes."""
    from saelab.diff.loading import ModelPair

    for new, old in (("bfloat16", "bf16"), ("float32", "fp32"), ("float16", "fp16"), ("auto", "auto")):
        a, b = ModelPair("m", "t", dtype=new), ModelPair("m", "t", quantization=old)
        assert a.dtype == b.dtype == L.dtype_name(new) and a.identity("base") == b.identity("base")
        assert a.identity("base")["quantization"] == old


@pytest.mark.parametrize("flags, recorded", [({"avx2"}, "fp32"), ({"amx_bf16"}, "bf16-autocast")])
def test_finetune_precision_auto_records_what_it_resolved_to(monkeypatch, tmp_path, flags, recorded):
    import json

    from saelab.finetune import CorpusSlice, finetune
    from tests.conftest import english
    from tests.diff._models import tiny_llama

    monkeypatch.setattr(L, "_cpu_flags", lambda: flags)
    out = finetune(tiny_llama(), CorpusSlice("t/s", english(8, seed=1), english(2, seed=2)), tmp_path / "t",
                   steps=1, lr=1e-2, batch_size=2, ctx_len=16, other_texts=english(2, seed=3), progress=False)
    assert json.loads((out / "finetune_config.json").read_text())["precision"] == recorded
