"""`saelab diff`: user mistakes are one line on stderr with exit code 2, never a traceback."""

from __future__ import annotations

import pytest
import torch

from saelab.cli import main


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


def _save(directory, extra_words: tuple[str, ...] = (), hidden: int = 32):
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.conftest import make_tokenizer

    torch.manual_seed(0)
    tok = make_tokenizer(extra_words=extra_words)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, eos_token_id=2,
                      bos_token_id=1, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(directory)
    tok.save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from tests.conftest import corpus_file

    d = tmp_path_factory.mktemp("models")
    corpus = corpus_file(d, 60)
    return {"base": _save(d / "base"), "other": _save(d / "other", extra_words=("zebra",)),
            "wide": _save(d / "wide", hidden=48),
            "corpus": str(corpus), "dir": d}


def _diff(capsys, models, *args: str) -> str:
    argv = ["diff", "--base-model", models["base"], "--corpus", models["corpus"], "--n-tokens", "1024",
            "--ctx-len", "32", "--output-dir", str(models["dir"] / "out"), *args]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert "Traceback" not in err and err.startswith("error:")
    return " ".join(err.split())


def test_models_that_cannot_be_diffed(capsys, models):
    assert "do not share a tokenizer" in _diff(capsys, models, "--target-model", models["other"])
    assert "hidden size" in _diff(capsys, models, "--target-model", models["wide"], "--layers", "1")
    assert "does not exist" in _diff(capsys, models, "--target-model", "/no/such/model.gguf")
    assert "layers: got [7], out of range" in _diff(capsys, models, "--target-model", models["base"], "--layers", "7")


def test_bad_options_and_files(capsys, models, tmp_path):
    t = ("--target-model", models["base"])
    for flag in ("--dtype", "--quantization"):  # --quantization: the seed's spelling, an alias
        assert "--dtype: got 'int4'; expected one of: auto, float32" in _diff(capsys, models, *t, flag, "int4")
    assert "bitsandbytes" in _diff(capsys, models, *t, "--dtype", "int8", "--device", "cuda")
    assert "feature_threshold: got 0.3" in _diff(capsys, models, *t, "--feature-threshold", "0.3")
    assert "report_format" in _diff(capsys, models, *t, "--report-format", "pdf")
    bad = tmp_path / "cats.json"
    bad.write_text("[1, 2]")
    assert "the top level is a list" in _diff(capsys, models, *t, "--categories", str(bad))
    empty = tmp_path / "cats.jsonl"
    empty.write_text('{"category": "chat", "text": "   "}\n')
    assert "'chat': it has no prompts" in _diff(capsys, models, *t, "--categories", str(empty))
    assert "not a saved crosscoder" in _diff(capsys, models, *t, "--crosscoder-file", str(tmp_path))
    assert "no finished paired activations" in _diff(capsys, models, *t, "--skip-activations")
