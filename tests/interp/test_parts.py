"""Parser, metrics by hand, prompt formatting, the contrastive explainer, the neighbours source."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.data.tokens import load_token_windows
from saelab.interp.config import ExampleConfig
from saelab.interp.examples import Example, LatentExamples, build_examples
from saelab.interp.explainers import ContrastiveExplainer, parse_marked
from saelab.interp.format import marked, marked_tally, token_decoder
from saelab.interp.metrics import auc, classification
from saelab.interp.negatives import NeighbourSource
from saelab.interp.registry import make_explainer
from saelab.latents.store import LatentStore

from .conftest import PLANTED


@pytest.mark.parametrize("text, expected", [
    ("Explanation: verbs of speaking", ("verbs of speaking", None)),
    ("Let me think.\nThe tokens are names.\nExplanation: first names of people", ("first names of people", None)),
    ("**Explanation:** \"cities\"", ("cities", None)),
    ("Explanation: 'which', 'In', 'should'", ("'which', 'In', 'should'", None)),
    ("The feature is about cities.", (None, "no 'Explanation:' line in the answer")),
    ("", (None, "empty answer")),
    ("Explanation: ", (None, "the 'Explanation:' line is empty or a placeholder")),
    ("Explanation: [your explanation]", (None, "the 'Explanation:' line is empty or a placeholder")),
    ("Explanation: 1. Movie tie-ins have been a recurring theme", ("Movie tie-ins have been a recurring theme", None)),
    ("Explanation: - the word games", ("the word games", None)),
    ("Explanation: 1984 and other years", ("1984 and other years", None)),
    ("Explanation: 2.", ("2.", None)),
])
def test_parse_marked_never_invents_an_explanation(text, expected):
    assert parse_marked(text) == expected


def _rec(label, pred, prob=None, failed=False):
    return {"label": label, "prediction": pred, "probability": prob, "failed": failed}


def test_metrics_by_hand():
    recs = [_rec(1, 1, 0.9), _rec(1, 0, 0.4), _rec(0, 1, 0.6), _rec(0, 0, 0.1), _rec(0, 0, 0.2),
            _rec(1, None, None, failed=True)]
    m = classification(recs)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 1, 1, 2)
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert m["auc"] == pytest.approx(5 / 6)  # pairs (pos > neg): 0.9 beats 3, 0.4 beats 2
    assert m["n_examples"] == 5 and m["n_failed"] == 1
    assert auc([_rec(1, 1, 0.5), _rec(1, 0, 0.5)]) is None  # one class: no AUC
    assert classification([])["precision"] is None


def test_marks_wrap_runs_of_firing_tokens(planted):
    _, tok = planted
    ids = tok.convert_tokens_to_ids(["the", "king", "war", "of", "city"])
    e = Example(0, 0, ids, [0, 1.0, 2.0, 0, 0.5], 0, 0)
    assert marked(e, token_decoder(tok)) == "the<< king war>> of<< city>>"


WORDS = {1: " the", 2: " Madrid", 3: " Liverpool", 4: " won", 5: "Madrid", 6: " "}


def _words(ids):
    return [WORDS[i] for i in ids]


def _tally_examples():
    train = [Example(0, 0, [1, 2, 4], [0.0, 2.0, 0.0], 0), Example(1, 0, [3, 4, 6], [1.5, 0.0, 0.3], 1),
             Example(2, 0, [5, 1, 3], [0.5, 0.0, 0.7], 2)]
    return LatentExamples(latent=7, n_activating=3, train=train, test=[], non_activating=[],
                          non_activating_source="random")


@pytest.mark.parametrize("answer, expected", [
    ("Explanation: The marked tokens are names of football clubs", "names of football clubs"),
    ("Explanation: The marked tokens, most frequent first, are 'at' and 'on'", "'at' and 'on'"),
    ("Explanation: marked tokens in all the examples are all dates", "dates"),
    ("Explanation: The marked tokens most frequently appear as '.'", "The marked tokens most frequently appear as '.'"),
    # 11 of 24 Qwen answers on the demo's ultra SAE opened this way (bench/interp_ultra2m_summary.md)
    ("Explanation: The marked tokens 'to' and 'of' are the most frequent words",
     "'to' and 'of' are the most frequent words"),
    ('Explanation: marked tokens "new" and "The" appear most often', '"new" and "The" appear most often'),
])
def test_explainer_reads_the_answer_without_filler(answer, expected):
    assert make_explainer("default").read(answer) == (expected, None)


@pytest.mark.parametrize("answer, expected", [
    # cut off by the answer's token budget (real Qwen answers on the demo's ultra SAE)
    ('Explanation: "of" (7 times), "every" (1 time), "great', '"of" (7 times), "every" (1 time)'),
    ("Explanation: 'March' (1 time), 'something' (1 time", "'March' (1 time)"),
    ("Explanation: 'F' (F), 'told' (told), 'telling' (", "'F' (F), 'told' (told)"),
    ("Explanation: 'to' (1 time), 'l' (", "'to' (1 time)"),
    # whole: kept as they are
    ("Explanation: 'of' (3 times), 'don't' (1 time)", "'of' (3 times), 'don't' (1 time)"),
    ("Explanation: '.', ',' and 'in'.", "'.', ',' and 'in'."),
    ("Explanation: names of clubs (football", "names of clubs (football"),
    ("Explanation: ',' (2 times), '(' (1 time)", "',' (2 times), '(' (1 time)"),
    ("Explanation: ‘hope’, ‘wish", "‘hope’"),
])
def test_a_list_item_cut_off_by_the_token_budget_is_dropped(answer, expected):
    assert make_explainer("default-tally").read(answer) == (expected, None)


def test_marked_tokens_are_counted_stripped_most_frequent_first():
    train = _tally_examples().train
    assert marked_tally(train, _words) == [("Madrid", 2), ("Liverpool", 2)]  # " Madrid" and "Madrid" are one word
    assert marked_tally(train, _words, n=1) == [("Madrid", 2)]


def test_only_the_tally_explainer_counts_the_marked_tokens():
    plain = make_explainer("default").prompt(_tally_examples(), _words)
    assert "<< Madrid>>" in plain[1]["content"] and "counted" not in plain[0]["content"] + plain[1]["content"]
    tally = make_explainer("default-tally")
    system, user = (m["content"] for m in tally.prompt(_tally_examples(), _words))
    assert user.endswith("Marked tokens, most frequent first: 'Madrid' ×2, 'Liverpool' ×2") and "<< Madrid>>" in user
    assert "counted" in system and tally.name == "default-tally" and not tally.worked_answers


def test_contrastive_prompt_shows_training_negatives_only(planted):
    ws, tok = planted
    store, windows = LatentStore(ws.latents("synth")), load_token_windows(ws.tokens)
    from saelab.interp.negatives import NegativeSource

    cfg = ExampleConfig(example_ctx_len=8, n_examples_train=6, n_examples_test=5, n_non_activating=5, min_examples=5)
    ex = build_examples(store, windows, 0, cfg, NegativeSource(store, 8))
    assert len(ex.train_non_activating) == 6
    assert not {e.chunk for e in ex.train_non_activating} & {e.chunk for e in ex.non_activating}
    prompt = ContrastiveExplainer().prompt(ex, token_decoder(tok))[-1]["content"]
    assert prompt.count("Counterexample") == 6 and prompt.count("<<") >= 6


def test_neighbour_negatives_are_where_a_cofiring_latent_fires(planted):
    ws, tok = planted
    store, windows = LatentStore(ws.latents("synth")), load_token_windows(ws.tokens)

    class Cooc:  # latent 0's only neighbour is latent 1
        def neighbours(self, latent, measure):
            return np.array([1]), np.array([0.5], np.float32)

    cfg = ExampleConfig(example_ctx_len=8, n_examples_train=5, n_examples_test=5, n_non_activating=8, min_examples=5)
    ex = build_examples(store, windows, 0, cfg, NeighbourSource(store, 8, Cooc()))
    assert ex.non_activating_source == "neighbours"
    music = tok.convert_tokens_to_ids(PLANTED[1])
    assert all(music in e.tokens and max(e.activations) == 0 for e in ex.non_activating)
