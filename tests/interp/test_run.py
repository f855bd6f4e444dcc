"""The whole run on a planted workspace: scores separate true from shuffled explanations,
failures are counted and retried, reruns resume, no secret reaches a file or a log."""

from __future__ import annotations

import json

import pytest
import torch

from saelab.interp import ExampleConfig, InterpConfig, TransformersClient, run
from saelab.interp.clients.base import Answer

from .conftest import PLANTED, RARE, ScriptedClient, interp_tokenizer
from .fake_server import FakeServer

EX = ExampleConfig(example_ctx_len=8, n_examples_train=8, n_examples_test=10, n_non_activating=10, min_examples=5)


def _embed(texts):  # bag of words: an explanation "king" is near texts that contain "king"
    import numpy as np

    vocab = {w: i for i, w in enumerate(sorted({w for t in texts for w in t.split()}))}
    out = np.zeros((len(texts), len(vocab) + 1), np.float32)
    for i, t in enumerate(texts):
        for w in t.split():
            out[i, vocab[w]] += 1
        out[i, -1] = 0.5
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _cfg(**kw):
    return InterpConfig(**{"examples": EX, "scorers": ("detection", "fuzz", "embedding"), **kw})


def test_true_explanations_beat_shuffled_ones(planted, tmp_path):
    ws, tok = planted
    out = run(_cfg(), ws, "synth", name="t", client=ScriptedClient(), tokenizer=tok, embed=_embed)
    s = json.loads((out / "summary.json").read_text())
    assert s["latents"] == list(range(len(PLANTED))) and str(RARE) in s["skipped"]
    for scorer in ("detection", "fuzz", "embedding"):
        true, chance = s["scores"][scorer]["explanation"]["pooled"], s["scores"][scorer]["shuffled"]["pooled"]
        assert true["auc"] > 0.95 and true["f1"] > 0.9, scorer
        assert chance["auc"] < 0.75, scorer
        assert "top-tokens" in s["scores"][scorer]
    explained = {int(p.stem): json.loads(p.read_text())["explanation"]
                 for p in (out / "explanations/default").iterdir()}
    assert explained == dict(enumerate(PLANTED))
    rec = json.loads((out / "scores/detection/explanation/0.json").read_text())["records"][0]
    assert {"tokens", "activations", "prediction", "probability", "correct", "failed"} <= set(rec)
    assert "| detection | shuffled |" in (out / "summary.md").read_text()
    vs_chance = {(c["variant"], c["reference"]): c for c in s["comparisons"]["detection"]}
    c = vs_chance["explanation", "shuffled"]
    assert c["metric"] == "auc" and c["n_latents"] == len(PLANTED) and c["difference"] > 0.2
    assert c["above"] is None and c["ci_low"] > 0  # 6 latents: a clear gain, but too few for a verdict
    assert "| detection | explanation | shuffled | auc |" in (out / "summary.md").read_text()


class Prefilled(ScriptedClient):
    """Continues a prefilled "Explanation:" and rambles on below it, as a small model does."""

    can_prefill = True

    def generate(self, prompts, max_tokens, prefix=""):
        good = super().generate(prompts, max_tokens)
        return [Answer(text=prefix + " " + (a.text or "").removeprefix("Explanation: ") + "\nExplanation: noise\nmore")
                for a in good]


def test_a_prefilled_answer_is_read_from_its_first_line(planted):
    ws, tok = planted
    out = run(_cfg(scorers=("detection",)), ws, "synth", name="p", client=Prefilled(), tokenizer=tok)
    explained = {int(p.stem): json.loads(p.read_text())["explanation"]
                 for p in (out / "explanations/default").iterdir()}
    assert explained == dict(enumerate(PLANTED))


class Mumbler(ScriptedClient):
    """Explains latent-0-like prompts in the wrong format."""

    def generate(self, prompts, max_tokens):
        good = super().generate(prompts, max_tokens)
        return [Answer(text="it is about kings") if "king" in (a.text or "") else a for a in good]


def test_an_unparseable_explanation_is_a_counted_failure_then_retried(planted):
    ws, tok = planted
    out = run(_cfg(), ws, "synth", name="t", client=Mumbler(), tokenizer=tok, embed=_embed)
    s = json.loads((out / "summary.json").read_text())
    assert s["explanation_failures"]["default"]["n_failed"] == 1
    assert s["explanation_failures"]["default"]["reasons"] == {"no 'Explanation:' line in the answer": 1}
    assert not (out / "scores/detection/explanation/0.json").exists()  # nothing scored for it
    client = ScriptedClient()
    run(_cfg(), ws, "synth", name="t", client=client, tokenizer=tok, embed=_embed)
    s = json.loads((out / "summary.json").read_text())
    assert s["explanation_failures"]["default"]["n_failed"] == 0
    assert client.calls == 1 + 2 * 20 + 5 * 2 * 20  # the failed explanation, its scores, new shuffled pairs


def test_a_rerun_does_nothing_and_overwrite_redoes_a_stage(planted):
    ws, tok = planted
    out = run(_cfg(), ws, "synth", name="t", client=ScriptedClient(), tokenizer=tok, embed=_embed)
    timed = lambda: json.loads((out / "summary.json").read_text())["timings"]  # noqa: E731
    first = timed()
    assert first["explain/default"]["n_latents"] == first["score/detection/shuffled"]["n_latents"] == 6
    assert first["score/fuzz/explanation"]["seconds_per_latent"] > 0
    again = ScriptedClient()
    run(_cfg(), ws, "synth", name="t", client=again, tokenizer=tok, embed=_embed)
    assert again.calls == 0 and timed() == first  # nothing done, no time added
    run(_cfg(), ws, "synth", name="t", client=again, tokenizer=tok, embed=_embed, overwrite=["scores"])
    assert again.calls == 3 * 2 * 6 * 20  # 3 variants × (detection, fuzz) × 6 latents × 20 examples
    assert timed()["score/detection/explanation"]["n_latents"] == 12 and "## Time" in (out / "summary.md").read_text()


def test_changed_example_settings_are_refused_not_mixed(planted):
    from dataclasses import replace

    from saelab.errors import ArtifactError

    ws, tok = planted
    run(_cfg(scorers=("embedding",)), ws, "synth", name="t", client=ScriptedClient(), tokenizer=tok, embed=_embed)
    other = replace(_cfg(scorers=("embedding",)), examples=replace(EX, n_examples_test=7))
    with pytest.raises(ArtifactError, match="--overwrite examples"):
        run(other, ws, "synth", name="t", client=ScriptedClient(), tokenizer=tok, embed=_embed)
    run(other, ws, "synth", name="t", client=ScriptedClient(), tokenizer=tok, embed=_embed,
        overwrite=["examples", "explanations", "scores"])


class Counting(ScriptedClient):
    def __init__(self) -> None:
        super().__init__()
        self.explained = 0

    def generate(self, prompts, max_tokens):
        self.explained += len(prompts)
        return super().generate(prompts, max_tokens)


def test_explanations_are_reused_only_from_the_same_prompt_and_model(planted, caplog):
    from dataclasses import replace

    ws, tok = planted
    cfg = _cfg(scorers=("embedding",))
    out = run(cfg, ws, "synth", name="t", client=Counting(), tokenizer=tok, embed=_embed)
    first = {p.name: json.loads(p.read_text()) for p in (out / "explanations/default").glob("*.json")}
    assert first and all(e["source"] for e in first.values())
    # new test examples, the same train examples: the explanations stand
    fewer = replace(cfg, examples=replace(EX, n_examples_test=7))
    client = Counting()
    run(fewer, ws, "synth", name="t", client=client, tokenizer=tok, embed=_embed, overwrite=["examples"])
    assert client.explained == 0
    # another explainer model under the same name: refused (never replaced silently), then redone when asked
    from saelab.errors import ArtifactError

    client = Counting()
    with pytest.raises(ArtifactError, match="explainer_model.*--overwrite explanations"):
        run(replace(fewer, explainer_model="another-model"), ws, "synth", name="t", client=client, tokenizer=tok,
            embed=_embed)
    assert client.explained == 0
    run(replace(fewer, explainer_model="another-model"), ws, "synth", name="t", client=client, tokenizer=tok,
        embed=_embed, overwrite=["explanations"])
    assert client.explained == len(first)
    # other train examples (asked for with --overwrite examples): their explanations are made again, with a warning
    client = Counting()
    more = replace(fewer, explainer_model="another-model", examples=replace(EX, n_examples_test=7, n_examples_train=5))
    run(more, ws, "synth", name="t", client=client, tokenizer=tok, embed=_embed, overwrite=["examples"])
    assert client.explained == len(first) and "made from other examples" in caplog.text


def test_openai_run_counts_failures_resumes_only_them_and_never_writes_the_key(planted, monkeypatch, caplog):
    ws, tok = planted
    secret = "sk-or-v1-TOPSECRET-987"
    monkeypatch.setenv("SAELAB_KEY", secret)
    # detection prompts about "war" fail on the first run
    flaky = FakeServer(fail_if=lambda b: "500" if b.get("logprobs") and "contain war?" in
                       b["messages"][-1]["content"] else None)
    small = ExampleConfig(example_ctx_len=8, n_examples_train=8, n_examples_test=5, n_non_activating=5,
                          min_examples=5)
    cfg = InterpConfig(examples=small, scorers=("detection",), max_latents=3, explainer_provider="openai",
                       base_url=flaky.url, explainer_model="fake", api_key_env="SAELAB_KEY", max_retries=1,
                       retry_backoff_s=0.01)
    with caplog.at_level("DEBUG"):
        out = run(cfg, ws, "synth", name="t", tokenizer=tok, embed=_embed)
    flaky.close()
    s = json.loads((out / "summary.json").read_text())
    n_failed = sum(t["pooled"]["n_failed"] for d in s["scores"].values() for t in d.values())
    assert n_failed > 0 and s["scores"]["detection"]["explanation"]["failure_reasons"]
    healthy = FakeServer()
    run(cfg.__class__(**{**cfg.__dict__, "base_url": healthy.url}), ws, "synth", name="t", tokenizer=tok,
        embed=_embed)
    healthy.close()
    assert len(healthy.bodies) == n_failed  # only the failed records were asked again
    s = json.loads((out / "summary.json").read_text())
    assert sum(t["pooled"]["n_failed"] for d in s["scores"].values() for t in d.values()) == 0
    assert s["scores"]["detection"]["explanation"]["pooled"]["auc"] > 0.95
    assert secret not in caplog.text
    for f in out.rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(errors="replace"), f
    assert json.loads((out / "run_config.json").read_text())["config"]["api_key_env"] == "SAELAB_KEY"


def _tiny_lm(seed: int):
    """A random 2-layer Llama over interp_tokenizer's vocabulary (Yes / No in it), as saelab loads models."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from saelab.models.load import LoadedModel

    tok = interp_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=1024, eos_token_id=2, bos_token_id=1,
                                         pad_token_id=2)).eval()
    return LoadedModel(model, tok, "tiny", "tiny", torch.float32, torch.device("cpu"))


def test_in_process_client_reads_probabilities_from_logprobs(planted):
    ws, _ = planted
    lm = _tiny_lm(seed=0)
    tok = lm.tokenizer
    client = TransformersClient(lm, batch_size=4, max_len=1024)
    answers = client.judge([[{"role": "user", "content": f"Text: the {w}"}] for w in PLANTED])
    assert all(0 < a.prob_yes < 1 and not a.failed for a in answers)
    # batched with left padding = one at a time
    single = client.judge([[{"role": "user", "content": "Text: the king"}]])[0].prob_yes
    assert single == pytest.approx(answers[0].prob_yes, abs=1e-4)
    cfg = InterpConfig(examples=EX, scorers=("detection",), max_latents=2, explainer="default", max_new_tokens=4)
    out = run(cfg, ws, "synth", name="tiny", client=client, tokenizer=tok)
    s = json.loads((out / "summary.json").read_text())
    # the in-process client starts each answer with "Explanation:", so even a random model answers in the
    # format: what it wrote is the explanation (and scores like one), and an empty line is a counted failure
    for f in (out / "explanations/default").iterdir():
        e = json.loads(f.read_text())
        assert e["raw"].startswith("Explanation:")
        assert e["failed"] == (e["reason"] == "the 'Explanation:' line is empty or a placeholder")
        assert e["failed"] or e["explanation"] == e["raw"].removeprefix("Explanation:").strip().splitlines()[0]
    assert s["explanation_failures"]["default"]["n"] == 2
    assert s["scores"]["detection"]["top-tokens"]["pooled"]["auc"] is not None


def _tiny_client():
    return TransformersClient(_tiny_lm(seed=1), 4)


def test_surprisal_loss_is_the_same_batched_and_by_hand():
    client = _tiny_client()
    tok, model = client.lm.tokenizer, client.lm.model
    prefixes, texts = ["the king of", "war"], ["music and water", "city"]
    got = client.nll(prefixes, texts)
    for p, t, g in zip(prefixes, texts, got):
        pre, txt = tok.encode(p, add_special_tokens=False), tok.encode(t, add_special_tokens=False)
        logp = torch.log_softmax(model(torch.tensor([pre + txt])).logits[0].float(), -1)
        by_hand = -sum(float(logp[len(pre) + j - 1, x]) for j, x in enumerate(txt)) / len(txt)
        assert g == pytest.approx(by_hand, abs=1e-4)


def test_surprisal_with_a_server_client_is_a_counted_failure(planted):
    ws, tok = planted
    cfg = _cfg(scorers=("surprisal",), max_latents=1)
    out = run(cfg, ws, "synth", name="s", client=ScriptedClient(), tokenizer=tok)
    t = json.loads((out / "summary.json").read_text())["scores"]["surprisal"]["explanation"]
    assert t["pooled"]["n_failed"] == 20 and t["pooled"]["n_examples"] == 0
    assert t["failure_reasons"] == {"surprisal needs the in-process transformers client": 20}


def test_neighbour_negatives_build_the_sparse_cooc_once(planted):
    from dataclasses import replace

    ws, tok = planted
    cfg = _cfg(scorers=("embedding",), examples=replace(EX, non_activating_source="neighbours"), max_latents=2)
    out = run(cfg, ws, "synth", name="n", client=ScriptedClient(), tokenizer=tok, embed=_embed)
    assert (ws.root / "cooc" / "synth" / "cfg.json").exists()
    ex = json.loads((out / "examples" / "0.json").read_text())
    assert ex["non_activating_source"] in ("neighbours", "neighbours+random")
    assert all(max(e["activations"]) == 0 for e in ex["non_activating"])


def test_shared_prefix_cache_gives_the_same_probabilities_as_whole_prompts():
    from saelab.interp.clients.local import _shared_cut

    client = _tiny_client()
    system = "A feature is described by an explanation . " * 10
    prompts = [[{"role": "system", "content": system},
                {"role": "user", "content": f"Explanation: king\nText: {t}\nIs it there ? Yes or No"}]
               for t in ("the king of war", "music", "the city and the water of the church")]
    texts = [client.render(m) for m in prompts]
    cut = _shared_cut(texts)
    assert cut > 0 and texts[0][:cut].endswith("Explanation: king\n")
    shared, whole = client._p_yes_shared(texts, cut), client._p_yes(texts)
    for (p, n), (q, m) in zip(shared, whole):
        assert p == pytest.approx(q, abs=1e-4) and n == m
    assert [a.prob_yes for a in client.judge(prompts)] == pytest.approx([q for q, _ in whole], abs=1e-4)


def test_demo_preset_runs_on_a_handful_of_latents(planted):
    from dataclasses import replace

    from saelab.interp import demo_preset

    ws, tok = planted
    cfg = demo_preset(max_latents=3)
    cfg = replace(cfg, examples=replace(cfg.examples, example_ctx_len=8, min_examples=5))
    out = run(cfg, ws, "synth", name="demo", client=ScriptedClient(), tokenizer=tok, embed=_embed)
    s = json.loads((out / "summary.json").read_text())
    assert s["n_latents"] == 3 and set(s["scores"]) == {"detection", "embedding"}
    assert s["scores"]["detection"]["explanation"]["pooled"]["auc"] > 0.95


class Interrupted(ScriptedClient):
    """Answers the first `n` judge calls, then the user presses Ctrl-C."""

    def __init__(self, n):
        super().__init__()
        self.left = n

    def judge(self, prompts):
        if self.left <= 0:
            raise KeyboardInterrupt
        self.left -= 1
        return super().judge(prompts)


def test_ctrl_c_while_scoring_leaves_a_partial_summary_and_a_rerun_finishes(planted):
    ws, tok = planted
    cfg = _cfg(scorers=("detection",))
    with pytest.raises(KeyboardInterrupt):
        run(cfg, ws, "synth", name="t", client=Interrupted(2), tokenizer=tok, embed=_embed)
    out = ws.root / "interp" / "t"
    s = json.loads((out / "summary.json").read_text())
    assert s["partial"] is True and 0 < s["scores"]["detection"]["explanation"]["n_latents"] < len(PLANTED)
    assert "**Partial:**" in (out / "summary.md").read_text()
    run(cfg, ws, "synth", name="t", client=ScriptedClient(), tokenizer=tok, embed=_embed)
    s = json.loads((out / "summary.json").read_text())
    assert s["partial"] is False and s["scores"]["detection"]["shuffled"]["n_latents"] == len(PLANTED)


def test_the_two_steps_score_only_the_variants_asked_for(planted, tmp_path):
    """`draw_examples` + `explain_and_score` (what diff naming calls): the chosen latents, the chosen variants."""
    from saelab.data.tokens import load_token_windows
    from saelab.errors import ConfigError
    from saelab.interp import NegativeSource, draw_examples, explain_and_score
    from saelab.latents import LatentStore

    ws, tok = planted
    store, windows, cfg = LatentStore(ws.latents("synth")), load_token_windows(ws.tokens), _cfg(scorers=("detection",))
    found, skipped = draw_examples(cfg, store, windows, NegativeSource(store, EX.example_ctx_len), tmp_path / "a")
    assert sorted(found) == list(range(len(PLANTED))) and RARE in skipped
    items = {l: found[l] for l in (0, 1, 2)}
    with pytest.raises(ConfigError, match="variants: got \\['chance'\\]"):
        explain_and_score(cfg, items, skipped, store, windows, tmp_path / "a", tokenizer=tok, variants=["chance"])
    client = ScriptedClient()
    done = explain_and_score(cfg, items, skipped, store, windows, tmp_path / "a", tokenizer=tok, client=client,
                             variants=("explanation", "shuffled"))
    assert set(done.explained) == {"default", "top-tokens"} and set(done.explained["default"]) == {0, 1, 2}
    assert list(done.texts) == ["explanation", "shuffled"] and done.client is client
    assert set(done.summary["scores"]["detection"]) == {"explanation", "shuffled"}
    assert not (tmp_path / "a" / "scores" / "detection" / "top-tokens").exists()

    top = _cfg(explainer="top-tokens", scorers=("detection",))
    done = explain_and_score(top, items, skipped, store, windows, tmp_path / "b", tokenizer=tok, variants=())
    assert done.summary is None and done.client is None and not (tmp_path / "b" / "summary.json").exists()
    assert set(done.explained) == {"top-tokens"} and "king" in done.explained["top-tokens"][0].explanation


def test_top_tokens_is_an_explainer_that_asks_no_llm(planted):
    from saelab.data.tokens import load_token_windows
    from saelab.interp import TOP_TOKENS, TopTokensExplainer, variant_names
    from saelab.interp.registry import make_explainer
    from saelab.latents import LatentStore

    ws, tok = planted
    assert isinstance(make_explainer(TOP_TOKENS.name), TopTokensExplainer) and not TOP_TOKENS.needs_client
    assert make_explainer("default").needs_client and make_explainer("default").variant == "explanation"
    assert variant_names(_cfg()) == ["explanation", TOP_TOKENS.variant, "shuffled"]
    assert variant_names(_cfg(explainer=TOP_TOKENS.name)) == [TOP_TOKENS.variant, "shuffled"]
    never = len(PLANTED) + 1
    e0, dead = TOP_TOKENS.explain_store(LatentStore(ws.latents("synth")), load_token_windows(ws.tokens), tok,
                                        [0, never])
    assert "king" in e0.explanation and not e0.failed
    assert dead.failed and dead.reason == "the latent never fires" and dead.explainer == TOP_TOKENS.name
