"""End to end on tiny stores: sparse correlation equals dense, `run` recovers the known
structure, the per-latent API answers from the saved analysis, bad input is explained."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from saelab._io import read_json
from saelab.activations import ActivationReader
from saelab.errors import ConfigError
from saelab.latents import LatentStore
from saelab.match import FeatureMatcher, MatchConfig, activation_moments, load_context, pearson, run
from saelab.workspace import Workspace

from ..latents.fixtures import tiny_lm
from .synthetic import coder
from .workspaces import SAME_HOOK, copy_dictionary, make_workspace, saved_windows


@pytest.fixture(scope="module")
def analysed(ws):
    return run(MatchConfig(), ws, "wide", "narrow")


def dense_text_activations(ws: Workspace, directions: np.ndarray) -> np.ndarray:
    """float64 [n_text_tokens, n]: every latent at every text position, brute force (float16 like the store)."""
    from saelab.data.tokens import load_token_windows

    windows = load_token_windows(ws.tokens)
    acts = ActivationReader(tiny_lm().model, ["model.layers.1"])(windows.tokens.long())["model.layers.1"]
    with torch.no_grad():
        z = coder(directions).encode(acts.reshape(-1, acts.shape[-1])).to(torch.float16).double()
    return z[windows.text_mask().reshape(-1)].numpy()


def test_sparse_pearson_equals_dense_corrcoef(ws, truth):
    a, b = LatentStore(ws.latents("narrow")), LatentStore(ws.latents("wide"))
    assert a.shard_windows != b.shard_windows  # the alignment of differently sharded stores is exercised
    r = pearson(activation_moments(a, b))  # [12, 17]
    dn, dw = dense_text_activations(ws, truth.narrow), dense_text_activations(ws, truth.wide)
    want = np.corrcoef(dn.T, dw.T)[:12, 12:]
    np.testing.assert_allclose(r, want, atol=1e-4)
    for i, j in truth.same.items():
        assert r[i, j] == pytest.approx(1.0, abs=1e-5)


def test_run_recovers_the_known_structure(analysed, truth):
    cfg = read_json(analysed / "cfg.json")
    assert cfg["signals_used"] == ["decoder_cosine", "activation_correlation", "top_token_overlap"]
    assert cfg["signals_not_used"] == {}
    lat = pq.read_table(analysed / "latents.parquet").to_pandas()
    wide, narrow = lat[lat.dictionary == "wide"], lat[lat.dictionary == "narrow"]
    assert set(narrow.latent[narrow["class"] == "matched"]) == set(truth.same)
    assert set(narrow.latent[narrow["class"] == "family parent"]) == set(truth.families)
    assert set(narrow.latent[narrow["class"] == "unique"]) == set(truth.unique)
    assert set(wide.latent[wide["class"] == "novel"]) == set(truth.novel)
    assert set(wide.latent[wide["class"] == "identical"]) == set(truth.same.values())
    fams = read_json(analysed / "families.json")
    assert fams["narrow"] == "narrow"
    assert {f["parent"]: sorted(f["members"]) for f in fams["families"]} == truth.families
    assert all(f["activation"]["union_jaccard"] > 0 for f in fams["families"])
    h = cfg["headline"]
    assert (h["one_to_one"], h["family_parents"], h["novel"]) == (len(truth.same), len(truth.families),
                                                                  len(truth.novel))
    curve = {c["threshold"]: c["fraction"] for c in cfg["curves"]["one_to_one"]}
    base = {c["threshold"]: c["fraction"] for c in cfg["curves"]["baseline_one_to_one"]}
    assert curve[0.7] == pytest.approx(len(truth.same) / 12) and base[0.7] == 0.0
    m = pq.read_table(analysed / "matches.parquet").to_pandas()
    same = m[m.one_to_one & m.above_chance]
    assert {(int(b), int(a)) for a, b in zip(same.latent_a, same.latent_b)} == set(truth.same.items())
    assert (same.activation_correlation > 0.999).all() and (same.top_token_jaccard == 1.0).all()
    assert ((analysed / "coverage.png").stat().st_size > 0
            and "Largest families" in (analysed / "summary.md").read_text())


def test_find_matches_from_the_saved_analysis(ws, analysed, truth):
    matcher = FeatureMatcher(load_context("narrow", ws))  # target: the workspace's other dictionary
    i, j = next(iter(truth.same.items()))
    report = matcher.find_matches(source_feature=i, n_candidates=500, n_top_matches=3)
    assert report.n_candidates_tested == 17 and report.target == "wide" and report.prefilter == "decoder_cosine"
    top = report.matches[0]
    assert top.target_feature == j and top.decoder_cosine == pytest.approx(1.0, abs=1e-5)
    assert (top.activation_correlation == pytest.approx(1.0, abs=1e-3)
            and report.best_correlation == pytest.approx(1.0, abs=1e-3))
    assert (top.top_token_overlap == 1.0 and top.shared_top_tokens and "same latent" in top.notes
            and "strong" in top.notes)
    parent, children = next(iter(truth.families.items()))
    notes = {m.target_feature: m.notes for m in matcher.find_matches(parent, n_top_matches=5).matches}
    assert all("family parent" in notes[c] for c in children)
    wide = FeatureMatcher(load_context("wide", ws), "narrow")
    assert "split child of narrow" in wide.find_matches(children[0]).matches[0].notes
    assert wide.find_matches(truth.novel[0], n_candidates=4).n_candidates_tested == 4
    cmp = matcher.compare_features(source_fid=i, target_fid=j)
    assert cmp["jaccard_similarity"] == 1.0 and cmp["source_only_tokens"] == cmp["target_only_tokens"] == []
    assert len(cmp["shared_tokens"]) > 0


def test_in_memory_index_equals_the_saved_one(ws, analysed, truth, tmp_path):
    other = Workspace(tmp_path)
    saved_windows(other)
    for name in ("narrow", "wide"):
        copy_dictionary(ws, name, other, name)
    fresh = FeatureMatcher(load_context("narrow", other), "wide").find_matches(7, n_top_matches=4)
    saved = FeatureMatcher(load_context("narrow", ws), "wide").find_matches(7, n_top_matches=4)
    assert [m.target_feature for m in fresh.matches] == [m.target_feature for m in saved.matches]
    np.testing.assert_allclose([m.activation_correlation for m in fresh.matches],
                               [m.activation_correlation for m in saved.matches], atol=1e-3)  # saved as float16


def test_unknown_latent_ids_name_the_valid_range(ws, analysed):
    matcher = FeatureMatcher(load_context("narrow", ws))
    with pytest.raises(ConfigError, match=r"source_feature: got 12; .*0 ≤ source_feature < 12"):
        matcher.find_matches(12)
    with pytest.raises(ConfigError, match=r"target_fid: got -1; .*0 ≤ target_fid < 17"):
        matcher.compare_features(0, -1)
    with pytest.raises(ConfigError, match="expected one of: narrow, wide"):
        load_context("ultra", ws)


def test_other_windows_refuse_correlation_and_say_why(ws, truth, tmp_path):
    elsewhere = make_workspace(tmp_path / "elsewhere", truth, {"wide": SAME_HOOK["wide"]}, seed=1)
    copy_dictionary(elsewhere, "wide", ws, "wide_elsewhere")
    try:
        out = run(MatchConfig(), ws, "wide_elsewhere", "narrow", out_dir=tmp_path / "out")
    finally:
        import shutil

        shutil.rmtree(ws.dictionary("wide_elsewhere")), shutil.rmtree(ws.latents("wide_elsewhere"))
    cfg = read_json(out / "cfg.json")
    assert cfg["signals_used"] == ["decoder_cosine"]
    assert "different token windows" in cfg["signals_not_used"]["activation_correlation"]
    assert cfg["headline"]["family_parents"] == len(truth.families)
    assert "activation correlation: not used — the stores were cached over different token windows" in \
        (out / "summary.md").read_text()


def test_other_hookpoint_falls_back_to_correlation(truth, tmp_path):
    ws = make_workspace(tmp_path, truth, {"narrow": SAME_HOOK["narrow"], "wide_l2": ("wide", "model.layers.2")})
    out = run(MatchConfig(), ws, "wide_l2", "narrow")
    cfg = read_json(out / "cfg.json")
    assert cfg["primary_signal"] == "activation_correlation" and "decoder_cosine" not in cfg["signals_used"]
    assert "different hookpoints" in cfg["signals_not_used"]["decoder_cosine"]
    assert read_json(out / "families.json")["families"] == []
    assert "no family search" in read_json(out / "families.json")["note"]
    report = FeatureMatcher(load_context("narrow", ws)).find_matches(0, n_top_matches=2)
    assert report.prefilter == "activation_correlation" and report.matches[0].decoder_cosine is None
    assert "different hookpoints" in report.signals_not_used["decoder_cosine"]


def test_top_tokens_and_vectorised_jaccard_equal_brute_force(ws, truth):
    from saelab.data.tokens import load_token_windows
    from saelab.match.top_tokens import jaccard, jaccard_rows, token_set, top_token_ids

    windows = load_token_windows(ws.tokens)
    top = top_token_ids(LatentStore(ws.latents("wide")), windows.tokens.numpy(), k=5)  # [17, 5]
    dense = dense_text_activations(ws, truth.wide)  # [n_text, 17]
    text_tokens = windows.tokens.reshape(-1)[windows.text_mask().reshape(-1)].numpy()
    for j in range(dense.shape[1]):
        order = np.lexsort((np.arange(dense.shape[0]), -dense[:, j]))[:5]  # largest first, earlier on ties
        assert token_set(top[j]) == set(text_tokens[order[dense[order, j] > 0]].tolist())
    rows = np.array([0, 3, 5, 5]), np.array([1, 3, 16, 0])
    want = [jaccard(token_set(top[i]), token_set(top[j])) for i, j in zip(*rows)]
    np.testing.assert_allclose(jaccard_rows(top[rows[0]], top[rows[1]]), want, rtol=1e-6)


def test_resume_keeps_a_whole_match_and_redoes_one_of_other_weights_or_settings(ws, truth, tmp_path):
    other = Workspace(tmp_path / "ws")
    saved_windows(other)
    for name in ("narrow", "wide"):
        copy_dictionary(ws, name, other, name)
    out = run(MatchConfig(), other, "wide", "narrow", resume=True)
    stamp = (out / "cfg.json").stat().st_mtime_ns
    assert run(MatchConfig(), other, "wide", "narrow", resume=True) == out
    assert (out / "cfg.json").stat().st_mtime_ns == stamp  # kept, not rewritten
    run(MatchConfig(same_threshold=0.8), other, "wide", "narrow", resume=True)
    assert read_json(out / "cfg.json")["config"]["same_threshold"] == 0.8
    stamp = (out / "cfg.json").stat().st_mtime_ns
    c = coder(truth.wide * 0.5, hookpoint="model.layers.1")  # other weights under the same name
    c.save(other.dictionary("wide"))
    run(MatchConfig(same_threshold=0.8), other, "wide", "narrow", resume=True)
    assert (out / "cfg.json").stat().st_mtime_ns != stamp


def test_a_second_writer_of_a_match_is_refused_naming_the_holder(ws, tmp_path):
    """One writer per match directory: while another process holds workspace/match/A__B, a run stops."""
    from saelab.errors import ArtifactError
    from saelab.match.run import match_dir
    from tests.test_workspace_rules import hold_elsewhere, kill

    out = match_dir(ws, "wide", "narrow")
    holder = hold_elsewhere(ws.root / ".locks" / "match" / f"{out.name}.lock")
    try:
        with pytest.raises(ArtifactError, match=rf"{holder.pid}"):
            run(MatchConfig(), ws, "wide", "narrow", resume=False)
    finally:
        kill(holder)
