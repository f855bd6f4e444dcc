"""`saelab demo`'s no-LLM check: top-token descriptions against shuffled ones on the embedding scorer, as one
interp run that asks no LLM; its sentences; a rerun that reads the finished run back."""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import replace

import pytest

from .interp.conftest import PLANTED, planted_for_cli


class _BagOfWords:  # stands in for all-MiniLM-L6-v2: words, without the quotes of a top-token description
    name = "bow"

    def __init__(self, *args, **kwargs) -> None:
        pass

    def embed(self, texts):
        from .interp.test_run import _embed

        return _embed([" ".join(re.findall(r"[a-z]+", t)) for t in texts])


def test_the_check_is_top_tokens_on_the_embedding_scorer_against_shuffled():
    from saelab.demo import TOP_TOKENS_LATENTS, top_tokens_config
    from saelab.interp import TOP_TOKENS, variant_names

    cfg = top_tokens_config()
    assert cfg.explainer == TOP_TOKENS.name and cfg.scorers == ("embedding",)
    assert cfg.max_latents == TOP_TOKENS_LATENTS >= 100 and cfg.latents is None  # interp's choice of latents
    assert variant_names(cfg) == [TOP_TOKENS.variant, "shuffled"]


def test_the_stage_asks_no_llm_and_a_rerun_reads_the_run_back(tmp_path, monkeypatch):
    import saelab.demo as demo

    def no_llm(config):
        raise AssertionError("the top-tokens check asked for an LLM")

    full = demo.top_tokens_config
    small = lambda: replace(full(), examples=replace(full().examples, example_ctx_len=8, n_examples_train=5,  # noqa: E731
                                                     n_examples_test=10, n_non_activating=10, min_examples=5))
    monkeypatch.setattr("saelab.models.embed.Embedder", _BagOfWords)
    monkeypatch.setattr(importlib.import_module("saelab.interp.run"), "make_client", no_llm)  # the module, not run()
    monkeypatch.setattr(demo, "top_tokens_config", small)
    ws = planted_for_cli(tmp_path)
    cfg = demo.DemoConfig(widths={"synth": 8, "wide": 64})
    lines: list[str] = []
    demo.stage_interp_top_tokens(cfg, ws, lines.append)
    out = ws.interp("synth-top-tokens")
    s = json.loads((out / "summary.json").read_text())
    c = s["comparisons"]["embedding"][0]
    assert (c["variant"], c["reference"], c["n_latents"]) == ("top-tokens", "shuffled", len(PLANTED))
    assert c["difference"] > 0.2  # a planted latent's top token is its word
    assert lines[0].startswith("synth, embedding: top-token descriptions") and f"of {len(PLANTED)} latents" in lines[0]
    assert f"{c['difference']:+.3f} (95% CI {c['ci_low']:+.3f} … {c['ci_high']:+.3f}" in lines[0]
    assert "At chance" in lines[0] and "too few for a verdict" in lines[0]  # a handful of planted latents
    assert "1 passed over" in lines[1]  # the latent that fires 3 times
    again: list[str] = []
    demo.stage_interp_top_tokens(cfg, ws, again.append)
    assert again == lines and json.loads((out / "summary.json").read_text())["timings"] == s["timings"]


def _summary(above, n_latents=128, comparisons=True):
    c = {"variant": "top-tokens", "reference": "shuffled", "metric": "auc", "n_latents": n_latents, "mean": 0.61,
         "mean_reference": 0.5, "difference": 0.11, "ci_low": 0.08, "ci_high": 0.14, "p_one_sided": 0.2,
         "above": above}
    scored = {"n_latents": n_latents, "pooled": {"n_examples": 50 * n_latents, "n_failed": 0}}
    return {"n_latents": n_latents, "skipped": {"7": "3 activating examples < min_examples (200)",
                                                "-1": "5 latents never fire (not listed one by one)"},
            "scores": {"embedding": {"top-tokens": scored, "shuffled": scored}},
            "comparisons": {"embedding": [c]} if comparisons else {},
            "timings": {"explain/top-tokens": {"seconds": 1.0, "n_latents": 128},
                        "score/embedding/shuffled": {"seconds": 63.0, "n_latents": 128},
                        "score/embedding/top-tokens": {"seconds": 64.0, "n_latents": 128}}}


@pytest.mark.parametrize("above, n, verdict", [(True, 128, "Above chance by +0.110"),
                                               (False, 128, "At chance: the difference from shuffled is +0.110"),
                                               (None, 9, "9 latents are too few for a verdict")])
def test_the_sentences_say_auc_beside_chance_the_difference_ci_verdict_and_time(above, n, verdict):
    from saelab.demo import top_tokens_sentences

    first, second = top_tokens_sentences(_summary(above, n), "full")
    assert first.startswith(f"full, embedding: top-token descriptions (no LLM) of {n} latents")
    assert "AUC 0.610 vs 0.500 shuffled (chance)" in first and verdict in first
    assert f"+0.110 (95% CI +0.080 … +0.140, {n} latents)" in first
    assert second.startswith(f"{128 / n:.2f} s per latent") and "128 s in all" in second and "1 passed over" in second


def test_no_comparison_says_so():
    from saelab.demo import top_tokens_sentences

    first, _ = top_tokens_sentences(_summary(None, 2, comparisons=False), "full")
    assert first.startswith("full, embedding: top-token descriptions (no LLM) of 2 latents")
    assert first.endswith("too few scored to compare with shuffled.")
