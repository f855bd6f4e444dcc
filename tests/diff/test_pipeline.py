"""The diff pipeline end to end on a tiny model pair: every artifact, resume, skips, bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from saelab.coders import CoderConfig, SparseCoder
from saelab.diff.pipeline import run_feature_interpretation_pipeline
from saelab.errors import ArtifactError, ConfigError, FormatError, ModelError

from ..conftest import corpus_file
from ._pair import CHANGED_LAYER, fast_config, tiny_pair

LAYER = CHANGED_LAYER
EVIL = "<b>evil</b>"


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def pair():
    return tiny_pair()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    cats = d / "cats.json"
    cats.write_text(json.dumps({"plain": ["the king of the city was there", "how do you make water"],
                                EVIL: ["the war and the nation", "she said that the music was good"]}))
    return corpus_file(d), cats


@pytest.fixture(scope="module")
def run(pair, inputs, tmp_path_factory):
    corpus, cats = inputs
    out = tmp_path_factory.mktemp("diff") / "run"
    result = run_feature_interpretation_pipeline(*pair, out, layers=[LAYER],
                                                 config=fast_config(corpus, categories=str(cats)),
                                                 progress=False)
    return out, result, corpus, cats


def test_every_stage_writes_its_artifact(run):
    out, result, _, _ = run
    assert result.done == {s: "ran" for s in result.done}
    d = out / "features" / f"layer_{LAYER:02d}"
    for path in ("cfg.json", "timings.json", "activations/cfg.json", "activations/manifest.json",
                 "activations/sweep/sweep.json", "activations/sweep/cfg.json", f"{d.name}/crosscoder/cfg.json",
                 f"{d.name}/crosscoder/weights.safetensors", f"{d.name}/latents/cfg.json", f"{d.name}/cfg.json",
                 f"{d.name}/latent_table.json", f"{d.name}/examples.json", f"{d.name}/naming/named.json",
                 f"{d.name}/naming/run_config.json", "visualizations/layer_divergence.png",
                 f"visualizations/delta_norm_layer_{LAYER:02d}.png", f"visualizations/categories_layer_{LAYER:02d}.png",
                 "visualizations/cfg.json", "reports/report.md", "reports/report.html", "reports/cfg.json"):
        p = out / path if not path.startswith("layer_") else out / "features" / path
        assert p.exists() and p.stat().st_size > 0, path
    assert json.loads((d / "latents" / "cfg.json").read_text())["complete"]
    assert json.loads((out / "cfg.json").read_text())["artifact"] == "diff_run"
    assert not list(out.rglob("request.json"))  # what a stage was made from is in its cfg.json
    assert [p.name for p in result.reports] == ["report.md", "report.html"]


def test_latent_table_holds_every_measure(run):
    out, _, _, _ = run
    table = json.loads((out / "features" / f"layer_{LAYER:02d}" / "latent_table.json").read_text())
    assert table["groups"] == ["corpus", "plain", EVIL]
    assert len(table["latents"]) == table["d_sae"] == 64
    for row in table["latents"]:
        assert 0 <= row["delta_norm"] <= 1 and -1 <= row["decoder_cosine"] <= 1 + 1e-6
        assert row["tag"] in ("target-only", "base-only", "shared", "other")
        assert len(row["frequency_by_group"]) == 3
        assert {"nu_eps", "nu_r", "artifact", "decoder_change"} <= set(row)
    alive = [r for r in table["latents"] if r["count"] > 0]
    assert sum(table["counts"].values()) == len(alive) == table["n_alive"]
    spread = table["delta_norm_spread"]
    assert spread["n"] == table["n_alive"] and spread["bands"] == table["counts"]
    assert spread["min"] <= spread["p05"] <= spread["q25"] <= spread["median"] <= spread["q75"] <= spread["max"]
    assert 0 < table["fvu"]["base"] < 1.5 and table["fvu"]["n_tokens"] > 0


def test_report_sentences_state_the_measured_counts(run):
    out, _, _, _ = run
    table = json.loads((out / "features" / f"layer_{LAYER:02d}" / "latent_table.json").read_text())
    c = table["counts"]
    md = (out / "reports" / "report.md").read_text()
    assert (f"Layer {LAYER}: {c['target-only']:,} target-only latents" in md and f"{c['shared']:,} shared" in md
            and f"of the {table['n_alive']:,} that fire" in md)
    s = table["delta_norm_spread"]
    assert f"Δnorm of the {s['n']:,} latents that fire (0: target only, 1: base only): median {s['median']:.3f}" in md
    assert "described by their most frequent tokens (top-tokens, no LLM)" in md
    named = json.loads((out / "features" / f"layer_{LAYER:02d}" / "naming" / "named.json").read_text())
    assert named["explainer"] == "top-tokens" and named["latents"]
    assert f"#{named['latents'][0]['latent']} " in md
    html = (out / "reports" / "report.html").read_text()
    assert EVIL not in html and "&lt;b&gt;evil&lt;/b&gt;" in html  # a category name is user text: escaped
    assert EVIL not in md


def test_rerun_resumes_without_redoing_finished_stages(run, pair):
    out, _, corpus, cats = run
    d = out / "features" / f"layer_{LAYER:02d}"
    watched = [out / "activations" / "manifest.json", out / "activations" / "sweep" / "sweep.json",
               d / "crosscoder" / "weights.safetensors", d / "latent_table.json", d / "naming" / "named.json"]
    before = [p.stat().st_mtime_ns for p in watched]
    result = run_feature_interpretation_pipeline(*pair, out, layers=[LAYER], progress=False,
                                                 config=fast_config(corpus, categories=str(cats)))
    assert [p.stat().st_mtime_ns for p in watched] == before
    for stage in ("activations", "sweep", "crosscoder", "features", "naming"):
        assert result.done[stage] == "resumed", stage
    assert result.seconds["activations"] == result.seconds["sweep"] == 0


def test_a_resumed_table_from_before_the_spread_gets_it(run, pair, tmp_path):
    out, _, corpus, cats = run
    shutil.copytree(out, tmp_path / "run")
    path = tmp_path / "run" / "features" / f"layer_{LAYER:02d}" / "latent_table.json"
    table = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in table.items() if k != "delta_norm_spread"}))
    result = run_feature_interpretation_pipeline(*pair, tmp_path / "run", layers=[LAYER], progress=False,
                                                 config=fast_config(corpus, categories=str(cats)))
    assert result.done["features"] == "resumed"
    assert json.loads(path.read_text())["delta_norm_spread"] == table["delta_norm_spread"]


def test_crosscoder_file_is_reused_and_checked(run, pair, tmp_path):
    out, _, corpus, cats = run
    src = out / "features" / f"layer_{LAYER:02d}" / "crosscoder"
    shutil.copytree(out / "activations", tmp_path / "run" / "activations")
    r = run_feature_interpretation_pipeline(*pair, tmp_path / "run", crosscoder_file=src, progress=False,
                                            skip=("naming", "visualization"),
                                            config=fast_config(corpus, categories=str(cats)))
    assert r.layers == [LAYER] and r.done["crosscoder"] == "file" and r.done["activations"] == "resumed"
    assert "Naming was skipped" in (tmp_path / "run" / "reports" / "report.md").read_text()
    with pytest.raises(ConfigError, match="reads layer 1"):
        run_feature_interpretation_pipeline(*pair, tmp_path / "x", layers=[2], crosscoder_file=src, progress=False)
    wrong = SparseCoder(CoderConfig("batchtopk", d_in=16, d_sae=8, k=2, kind="crosscoder", n_sources=2,
                                    hookpoint="model.layers.1", apply_b_dec_to_input=False))
    wrong.save(tmp_path / "wrong")
    with pytest.raises(ConfigError, match="d_in is 16"):
        run_feature_interpretation_pipeline(*pair, tmp_path / "run", crosscoder_file=tmp_path / "wrong", progress=False,
                                            config=fast_config(corpus, categories=str(cats)))
    SparseCoder(CoderConfig("topk", d_in=32, d_sae=8, k=2, hookpoint="model.layers.1")).save(tmp_path / "sae")
    with pytest.raises(FormatError, match="2 sources"):
        run_feature_interpretation_pipeline(*pair, tmp_path / "y",
                                            crosscoder_file=tmp_path / "sae" / "weights.safetensors")
    with pytest.raises(FormatError, match="not a saved crosscoder"):
        run_feature_interpretation_pipeline(*pair, tmp_path / "z", crosscoder_file=tmp_path / "nothing")



def _published_layouts(coder: SparseCoder, root):
    """The run's crosscoder written as crosscoder-model-diff-replication (cfg.json + cc_weights.pt, a
    TransformerLens resid_pre hook point) and as a dictionary_learning BatchTopKCrossCoder (Hub layout: no layer)."""
    from safetensors.torch import save_file

    w = {k: v.detach().float().contiguous() for k, v in coder.state_dict().items()}
    ck = root / "blocks.2.hook_resid_pre"
    ck.mkdir(parents=True)
    torch.save({k: w[k] for k in ("W_enc", "W_dec", "b_enc", "b_dec")}, ck / "cc_weights.pt")
    (ck / "cfg.json").write_text(json.dumps({"d_in": coder.d_in, "dict_size": coder.d_sae, "enc_dtype": "fp32",
                                             "hook_point": f"blocks.{LAYER + 1}.hook_resid_pre"}))
    dl = root / "dl"
    dl.mkdir()
    save_file({"encoder.weight": w["W_enc"], "encoder.bias": w["b_enc"], "decoder.bias": w["b_dec"],
               "decoder.weight": w["W_dec"].permute(1, 0, 2).contiguous(), "code_normalization_id": torch.tensor(4),
               "k": torch.tensor(coder.cfg.k), "threshold": w["threshold"]}, str(dl / "model.safetensors"))
    (dl / "config.json").write_text(json.dumps({"activation_dim": coder.d_in, "dict_size": coder.d_sae,
                                                "num_layers": 2, "k": coder.cfg.k, "code_normalization": "NONE"}))
    return ck, dl


def test_published_crosscoder_files_are_read(run, pair, tmp_path):
    out, _, corpus, cats = run
    ck, dl = _published_layouts(SparseCoder.load(out / "features" / f"layer_{LAYER:02d}" / "crosscoder"), tmp_path)
    config = fast_config(corpus, categories=str(cats))
    for name, src, layers in (("ck", ck / "cc_weights.pt", None), ("dl", dl, [LAYER])):
        shutil.copytree(out / "activations", tmp_path / name / "activations")
        r = run_feature_interpretation_pipeline(*pair, tmp_path / name, crosscoder_file=src, layers=layers,
                                                progress=False, skip=("naming", "visualization"), config=config)
        assert r.layers == [LAYER] and r.done["crosscoder"] == "file", name
        table = json.loads((tmp_path / name / "features" / f"layer_{LAYER:02d}" / "latent_table.json").read_text())
        assert len(table["latents"]) == 64
    with pytest.raises(ConfigError, match=r"has no hookpoint; pass the layer .* with --layers L"):
        run_feature_interpretation_pipeline(*pair, tmp_path / "x", crosscoder_file=dl, progress=False)
    with pytest.raises(ConfigError, match=r"reads layer 1 \(hookpoint 'blocks\.2\.hook_resid_pre'\)"):
        run_feature_interpretation_pipeline(*pair, tmp_path / "x", crosscoder_file=ck, layers=[2], progress=False)


@pytest.mark.parametrize("hookpoint, layer", [("model.layers.1", 1), ("resid_post.1", 1), ("layers.1", 1),
                                              ("blocks.1.hook_resid_post", 1), ("blocks.2.hook_resid_pre", 1),
                                              ("resid_pre.2", 1), ("model.layers.2:input", 1)])
def test_crosscoder_file_hookpoint_aliases_fit_their_layer(hookpoint, layer):
    from types import SimpleNamespace

    from saelab.diff.pipeline import _check_fits, _crosscoder_layers

    coder = SparseCoder(CoderConfig("relu", d_in=32, d_sae=8, kind="crosscoder", n_sources=2, hookpoint=hookpoint,
                                    apply_b_dec_to_input=False))
    pair = SimpleNamespace(hookpoint=lambda l: f"model.layers.{l}")
    assert _crosscoder_layers(coder, None) == [layer]
    _check_fits(coder, SimpleNamespace(d_model=32), layer, pair)
    with pytest.raises(ConfigError, match="layer 2 of these models is 'model.layers.2'"):
        _check_fits(coder, SimpleNamespace(d_model=32), 2, pair)

def test_bad_pairs_and_inputs_are_refused(pair, inputs, tmp_path):
    from tests.conftest import make_tokenizer

    corpus, _ = inputs
    base, target = pair
    other_tok = dataclasses.replace(target, tokenizer=make_tokenizer(extra_words=("zebra",)))
    with pytest.raises(ModelError, match="do not share a tokenizer"):
        run_feature_interpretation_pipeline(base, other_tok, tmp_path / "a", layers=[1], config=fast_config(corpus))
    wide, _ = tiny_pair(hidden=48)
    with pytest.raises(ConfigError, match="hidden size"):
        run_feature_interpretation_pipeline(base, wide, tmp_path / "b", layers=[1], config=fast_config(corpus))
    bad = tmp_path / "bad.json"
    bad.write_text('{"reasoning": ["a", ')
    with pytest.raises(ConfigError, match="not valid JSON"):
        run_feature_interpretation_pipeline(base, target, tmp_path / "c",
                                            config=fast_config(corpus, categories=str(bad)))
    empty = tmp_path / "empty.json"
    empty.write_text('{"reasoning": ["why is the sky blue"], "chat": []}')
    with pytest.raises(ConfigError, match="'chat': it has no prompts"):
        run_feature_interpretation_pipeline(base, target, tmp_path / "d",
                                            config=fast_config(corpus, categories=str(empty)))
    with pytest.raises(ArtifactError, match="holds no finished paired activations"):
        run_feature_interpretation_pipeline(base, target, tmp_path / "e", skip=("activations",))
    with pytest.raises(ConfigError, match="skip"):
        run_feature_interpretation_pipeline(base, target, tmp_path / "f", skip=("everything",))
    assert not torch.is_grad_enabled() or True


class _Judge:
    """A stand-in LLM: explains every latent as "words", and says yes when the text holds a firing word of the
    latent's training examples (so detection beats the shuffled baseline)."""

    name = "stub"
    has_logprobs = True

    def __init__(self):
        self.calls = {"generate": 0, "judge": 0}

    def generate(self, prompts, max_tokens):
        from saelab.interp.clients.base import Answer

        self.calls["generate"] += len(prompts)
        out = []
        for p in prompts:
            marked = [w.strip("<> ") for w in p[-1]["content"].split("<<")[1:]]
            words = sorted({m.split(">>")[0].strip() for m in marked})[:3]
            out.append(Answer(text="Explanation: " + " ".join(words)))
        return out

    def judge(self, prompts):
        from saelab.interp.clients.base import Answer

        self.calls["judge"] += len(prompts)
        out = []
        for p in prompts:
            text = p[-1]["content"]
            expl, body = text.split("\n", 1)
            words = expl.removeprefix("Explanation: ").split()
            out.append(Answer(prob_yes=0.9 if any(f" {w} " in f" {body} " for w in words) else 0.1))
        return out

    def n_tokens(self, messages):
        return sum(len(m["content"]) for m in messages) // 4

    def describe(self):
        return {"provider": "stub"}


def test_llm_naming_path_with_a_stub_judge(run, tmp_path):
    from saelab.diff.naming import NAMING_EXAMPLES, NamingConfig, name_features
    from saelab.diff.pair import PairedActivations
    from saelab.latents import LatentStore

    out, _, _, _ = run
    d = out / "features" / f"layer_{LAYER:02d}"
    table = json.loads((d / "latent_table.json").read_text())
    acts = PairedActivations(out / "activations")
    judge = _Judge()
    config = NamingConfig(explainer="some-llm", examples=dataclasses.replace(NAMING_EXAMPLES, min_examples=3),
                          n_target_only=2, n_base_only=1, n_changed=2)
    named = name_features(LatentStore(d / "latents"), acts.windows(), _tokenizer(run), table,
                          tmp_path / "naming", config, client=judge)
    assert named["kind"] == "llm" and named["explainer"] == "some-llm" and named["latents"]
    assert judge.calls["generate"] == len(named["latents"])
    for row in named["latents"]:
        assert row["explanation"] and row["detection"]["n_examples"] > 0 and row["shuffled_detection"]
    assert named["pooled"]["explanation"]["f1"] is not None
    again = name_features(LatentStore(d / "latents"), acts.windows(), _tokenizer(run), table, tmp_path / "naming",
                          config, client=judge)
    assert again == named and judge.calls["generate"] == len(named["latents"])  # finished: nothing asked again


def _tokenizer(run):
    from tests.conftest import make_tokenizer

    return make_tokenizer()


def test_int8_on_cpu_is_dynamic_quantization_close_to_fp32():
    from saelab.activations.capture import ActivationReader
    from saelab.models.quantize import check_int8, quantize_dynamic_int8

    if not set(torch.backends.quantized.supported_engines) - {"none"}:
        with pytest.raises(ConfigError, match="not supported"):
            check_int8("cpu")
        return
    check_int8("cpu")
    base, _ = tiny_pair()
    x = torch.randint(3, 100, (2, 16))
    ref = ActivationReader(base.model, ["resid_post.1"])(x)["model.layers.1"]
    out = ActivationReader(quantize_dynamic_int8(base.model), ["resid_post.1"])(x)["model.layers.1"]
    assert 0 < float((out - ref).norm() / ref.norm()) < 0.05


def test_changed_settings_stop_with_a_cli_hint_until_overwrite(run, pair, tmp_path):
    import dataclasses
    import shutil

    from saelab.errors import ArtifactError

    src, _, corpus, cats = run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    cfg = fast_config(corpus, categories=str(cats))
    other_k = dataclasses.replace(cfg, crosscoder=dataclasses.replace(cfg.crosscoder, k=8))
    with pytest.raises(ArtifactError, match=rf"layer {LAYER} crosscoder \(.*\) was made with other settings.*"
                                            r"k: 4 → 8.*Rerun with --overwrite"):
        run_feature_interpretation_pipeline(*pair, out, layers=[LAYER], config=other_k, progress=False)
    r = run_feature_interpretation_pipeline(*pair, out, layers=[LAYER], config=other_k, progress=False, overwrite=True)
    assert r.done["activations"] == "resumed" and r.done["crosscoder"] == "ran"
    assert json.loads((out / "features" / f"layer_{LAYER:02d}" / "crosscoder" / "cfg.json").read_text())["k"] == 8
    fewer = dataclasses.replace(other_k, n_tokens=4096)
    with pytest.raises(ArtifactError, match=r"paired activations \(.*\) was made with other settings.*"
                                            r"n_windows: \d+ → \d+.*--overwrite"):
        run_feature_interpretation_pipeline(*pair, out, layers=[LAYER], config=fewer, progress=False)
    r = run_feature_interpretation_pipeline(*pair, out, layers=[LAYER], config=fewer, progress=False, overwrite=True)
    assert r.done["activations"] == "ran"


def test_ctrl_c_keeps_finished_stages_a_rerun_resumes_and_a_second_writer_is_refused(run, pair, tmp_path,
                                                                                       monkeypatch):
    import importlib

    from tests.test_workspace_rules import hold_elsewhere, kill

    src, _, corpus, cats = run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    shutil.rmtree(out / "features" / f"layer_{LAYER:02d}" / "naming")  # the stage the interruption will hit
    pipeline = importlib.import_module("saelab.diff.pipeline")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "name_features", interrupted)
    cfg = fast_config(corpus, categories=str(cats))
    with pytest.raises(KeyboardInterrupt):
        run_feature_interpretation_pipeline(*pair, out, layers=[LAYER], config=cfg, progress=False)
    assert not (out / ".lock").exists()  # released on Ctrl-C
    monkeypatch.undo()
    holder = hold_elsewhere(out / ".lock")  # another `saelab diff -o` on the same directory
    try:
        with pytest.raises(ArtifactError, match=f"being written by another saelab process \\(PID {holder.pid}"):
            run_feature_interpretation_pipeline(*pair, out, layers=[LAYER], config=cfg, progress=False)
    finally:
        kill(holder)
    r = run_feature_interpretation_pipeline(*pair, out, layers=[LAYER], config=cfg, progress=False)  # no --overwrite
    assert [r.done[s] for s in ("activations", "sweep", "crosscoder", "features")] == ["resumed"] * 4
    assert r.done["naming"] == "ran" and (out / "features" / f"layer_{LAYER:02d}" / "naming" / "named.json").exists()
