"""One reader of interp explanations, on the layout `saelab.interp.run` really writes; match and sfal use it."""

from __future__ import annotations

import pytest

from saelab.errors import ArtifactError
from saelab.interp import InterpConfig, find_run, load_explanations, run

from .conftest import PLANTED
from .test_run import EX, Mumbler


def test_explanations_read_back_from_a_named_run(planted):
    from saelab.match.summary import explanations
    from saelab.sfal import SfalConfig, explanations_for
    from saelab.sfal import load_explanations as sfal_load

    ws, tok = planted
    assert load_explanations(ws, "synth") == {}  # no run yet: nothing, not an error
    out = run(InterpConfig(examples=EX, scorers=("recall",)), ws, "synth", name="my-run", client=Mumbler(),
              tokenizer=tok)
    assert out == ws.root / "interp" / "my-run" and (out / "explanations" / "default" / "0.json").exists()
    assert find_run(ws, "synth") == out  # found through run_config.json, not by the dictionary's name
    want = {i: w for i, w in enumerate(PLANTED) if i != 0}  # latent 0's explanation failed: left out
    assert load_explanations(ws, "synth") == want == load_explanations(ws, "synth", run="my-run")
    assert load_explanations(None, None, run=out) == want
    top = load_explanations(ws, "synth", explainer="top-tokens")
    assert set(top) == set(range(len(PLANTED))) and "king" in top[0]
    with pytest.raises(ArtifactError, match="holds explanations by default, top-tokens"):
        load_explanations(ws, "synth", explainer="contrastive")
    with pytest.raises(ArtifactError, match="no interp run at nope"):
        load_explanations(ws, "synth", run="nope")
    assert load_explanations(ws, "other-dictionary") == {}

    assert explanations(ws, "synth") == want  # match's family tables
    for expl in (explanations_for("interp", SfalConfig(), ws, "synth"),
                 explanations_for("interp:my-run", SfalConfig(), ws, "synth"), sfal_load(out, d_sae=10)):
        assert expl.texts == want and "explainer default" in expl.kind


def test_a_run_read_back_as_the_report_reads_it(planted):
    from saelab.interp import load

    ws, tok = planted
    out = run(InterpConfig(examples=EX, scorers=("detection",)), ws, "synth", name="r", client=Mumbler(),
              tokenizer=tok)
    assert load.run_dictionary(out) == "synth" and load.run_explainer(out) == "default"
    assert load.scored_variant("default") == "explanation"
    assert load.scored_variant("top-tokens") == "top-tokens"
    assert load.read_failures(out, "default") == {0: "no 'Explanation:' line in the answer"}
    assert load.read_summary(out)["explainer"] == "default"
    per = load.read_per_latent(out, "explanation")
    assert set(per) == {"detection"} and set(per["detection"]) == set(range(1, len(PLANTED)))
    assert load.scorers_with_records(out, "explanation") == ["detection"]
    records = load.read_records(out, "detection", "explanation", 1)
    assert records and {"label", "prediction", "failed"} <= set(records[0])
    assert load.read_records(out, "detection", "explanation", 0) == []  # failed: never scored
