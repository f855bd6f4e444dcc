"""`saelab autointerp`: delphi's spellings, one-line errors, a run on a planted workspace."""

from __future__ import annotations

import pytest

from ..conftest import run_cli
from .conftest import planted_for_cli


def test_help_lists_delphi_parameters(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert run_cli("autointerp", "--help") == 0
    text = capsys.readouterr().out
    for flag in ("--n_tokens", "--max_latents", "--hookpoints", "--scorers", "--explainer_model",
                 "--explainer_provider", "--explainer_model_max_len", "--num_examples_per_scorer_prompt",
                 "--dataset_repo", "--dataset_split", "--dataset_column", "--batch_size", "--cache_ctx_len",
                 "--min_examples", "--n_examples_train", "--n_examples_test", "--n_non_activating",
                 "--example_ctx_len", "--center_examples", "--non_activating_source", "--filter_bos", "--seed",
                 "--overwrite", "--name"):
        assert flag in text, flag


@pytest.mark.parametrize("args, expected", [
    (("--scorers", "telepathy"), "scorers: got ['telepathy']; expected one of: detection, embedding, fuzz, intruder, "
                                 "recall, simulation, surprisal"),
    (("--explainer", "oracle"), "explainer: got 'oracle'"),
    (("--latents", "20-x"), "latents: got '20-x'; expected latent ids and inclusive ranges"),
    (("--latents", "9-3"), "latents: got '9-3'"),
    (("--explainer_provider", "vllm"), "explainer_provider: got 'vllm'; expected one of: transformers, openai"),
])
def test_unknown_names_list_the_valid_ones(tmp_path, capsys, args, expected):
    assert run_cli("autointerp", "tiny", "synth", "-w", str(tmp_path), *args) == 2
    err = capsys.readouterr().err
    assert expected in " ".join(err.split()) and "Traceback" not in err


def test_latents_take_ids_and_inclusive_ranges():
    from saelab.cli.interp import _latent_ids

    assert _latent_ids(["5", "20-22", "1,2, 21"]) == (5, 20, 21, 22, 1, 2)
    assert _latent_ids([]) is None


class _BagOfWords:  # stands in for all-MiniLM-L6-v2 (its load is most of this test's time)
    def __init__(self, *args, **kwargs):
        self.name = "bow"

    def embed(self, texts):
        from .test_run import _embed

        return _embed(texts)


def test_top_tokens_run_from_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("saelab.models.embed.Embedder", _BagOfWords)
    ws = planted_for_cli(tmp_path)
    assert run_cli("autointerp", tmp_path / "tok", "synth", "-w", ws.root, "--explainer", "top-tokens", "--scorers",
                   "embedding", "--min_examples", "5", "--example_ctx_len", "8", "--n_examples_train", "5",
                   "--n_examples_test", "5", "--n_non_activating", "5", "--max_latents", "3") == 0
    out = capsys.readouterr().out
    assert "| embedding | top-tokens | 3 |" in out and "| embedding | shuffled | 3 |" in out
    assert (ws.root / "interp" / "synth" / "summary.json").exists()
