"""saelab.synth: sampling properties (firing rates, hierarchy, correlation), determinism, save -> load, configs."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from saelab.errors import ConfigError, FormatError
from saelab.synth import (
    ConstantFiringProbabilityConfig,
    FoldedNormalMagnitudeConfig,
    Hierarchy,
    HierarchyConfig,
    LinearFiringProbabilityConfig,
    LinearMagnitudeConfig,
    LowRankCorrelationConfig,
    OrthogonalizationConfig,
    SynthConfig,
    SynthModel,
    ZipfianFiringProbabilityConfig,
    load_synth_model,
    make_synth_model,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_binomial(rates: torch.Tensor, probs: torch.Tensor, n: int, z: float = 5.0) -> None:
    """Every empirical rate within z standard errors of its probability (plus float slack)."""
    se = (probs * (1 - probs) / n).sqrt()
    bad = ((rates - probs).abs() > z * se + 1e-6).nonzero().flatten().tolist()
    assert not bad, [(i, rates[i].item(), probs[i].item()) for i in bad[:5]]


def full_config(seed: int | None = 0) -> SynthConfig:
    return SynthConfig(
        num_features=300, hidden_dim=24,
        firing_probability=ZipfianFiringProbabilityConfig(exponent=0.6, max_prob=0.3, min_prob=0.01),
        hierarchy=HierarchyConfig(total_root_nodes=10, branching_factor=(2, 4), max_depth=3,
                                  mutually_exclusive_portion=0.5, compensate_probabilities=True),
        orthogonalization=OrthogonalizationConfig(num_steps=20, chunk_size=64),
        correlation=LowRankCorrelationConfig(rank=6, correlation_scale=0.2),
        std_firing_magnitudes=FoldedNormalMagnitudeConfig(mean=0.2, std=0.1),
        mean_firing_magnitudes=LinearMagnitudeConfig(start=2.0, end=1.0), bias=0.5, seed=seed)


def exclusive_groups(model: SynthModel) -> list[list[int]]:
    groups, stack = [], list(model.hierarchy.roots)
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.mutually_exclusive_children:
            groups.append([c.feature_index for c in node.children])
    return groups


# --- sampling ----------------------------------------------------------------------------------------------------


def test_independent_firing_rates_match_probabilities_and_hidden_is_linear() -> None:
    cfg = SynthConfig(num_features=128, hidden_dim=16, seed=1,
                      firing_probability=ZipfianFiringProbabilityConfig(exponent=0.8, max_prob=0.4, min_prob=0.01))
    m = make_synth_model(cfg)
    n = 40_000
    hidden, acts = m.sample(n, generator=gen(0))
    assert hidden.shape == (n, 16) and acts.shape == (n, 128)
    assert hidden.dtype == acts.dtype == torch.float32 and (acts >= 0).all()
    assert set(acts.unique().tolist()) <= {0.0, 1.0}  # std 0, mean 1
    assert_binomial((acts > 0).float().mean(0), m.firing_probabilities, n)
    torch.testing.assert_close(hidden, acts @ m.feature_vectors + m.bias, atol=1e-5, rtol=1e-5)


def test_magnitudes_follow_mean_and_std() -> None:
    m = make_synth_model(SynthConfig(num_features=8, hidden_dim=4, mean_firing_magnitudes=3.0,
                                     std_firing_magnitudes=0.5, seed=0,
                                     firing_probability=ConstantFiringProbabilityConfig(0.5)))
    _, acts = m.sample(20_000, generator=gen(1))
    fired = acts[acts > 0]
    assert abs(fired.mean().item() - 3.0) < 5 * 0.5 / fired.numel() ** 0.5
    assert abs(fired.std().item() - 0.5) < 0.02


def test_sampling_depends_on_the_generator_only() -> None:
    m = make_synth_model(full_config())
    torch.manual_seed(0)
    a = m.sample(500, generator=gen(7))
    torch.manual_seed(1)  # the global RNG plays no part
    b = m.sample(500, generator=gen(7))
    c = m.sample(500, generator=gen(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_building_is_deterministic_given_the_seed() -> None:
    a, b, c = make_synth_model(full_config(0)), make_synth_model(full_config(0)), make_synth_model(full_config(1))
    for name in ("feature_vectors", "bias", "firing_probabilities", "mean_firing_magnitudes",
                 "std_firing_magnitudes", "correlation_factor"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.hierarchy == b.hierarchy
    assert not torch.equal(a.feature_vectors, c.feature_vectors)


def test_orthogonalization_lowers_interference() -> None:
    base = SynthConfig(num_features=128, hidden_dim=32, seed=0)
    plain = make_synth_model(base).feature_vectors
    ortho = make_synth_model(SynthConfig(num_features=128, hidden_dim=32, seed=0,
                                         orthogonalization=OrthogonalizationConfig(num_steps=100))).feature_vectors
    off = ~torch.eye(128, dtype=torch.bool)

    def interference(v: torch.Tensor) -> float:
        return (v @ v.T)[off].pow(2).mean().item()

    torch.testing.assert_close(ortho.norm(dim=1), torch.ones(128))
    assert interference(ortho) < 0.9 * interference(plain)


# --- hierarchy ---------------------------------------------------------------------------------------------------


def test_hierarchy_constraints_hold_in_every_sample() -> None:
    m = make_synth_model(full_config())
    _, acts = m.sample(20_000, generator=gen(2))
    on = acts > 0
    parents = {f: p for f, p in m.hierarchy.parents.items() if p >= 0}
    children, parent_of = list(parents), list(parents.values())
    assert not (on[:, children] & ~on[:, parent_of]).any(), "a child fired without its parent"
    groups = exclusive_groups(m)
    assert groups, "the config should make some exclusive groups"
    for group in groups:
        assert (on[:, group].sum(1) <= 1).all(), f"exclusive siblings {group} fired together"
    assert on[:, [f for g in groups for f in g]].any(), "exclusive children never fired: the test is vacuous"


def test_exclusion_picks_the_winner_uniformly() -> None:
    # feature 0 (root) and its two exclusive children all fire with probability 1: one child survives, 50/50
    cfg = SynthConfig(num_features=3, hidden_dim=4, seed=0, firing_probability=ConstantFiringProbabilityConfig(1.0),
                      hierarchy=HierarchyConfig(total_root_nodes=1, branching_factor=2, max_depth=1,
                                                mutually_exclusive_portion=1.0))
    m = make_synth_model(cfg)
    n = 20_000
    _, acts = m.sample(n, generator=gen(3))
    on = acts > 0
    assert on[:, 0].all() and (on[:, 1:].sum(1) == 1).all()
    assert_binomial(on[:, 1:].float().mean(0), torch.tensor([0.5, 0.5]), n)


def test_compensation_restores_base_rates_of_children() -> None:
    # depth 1, no exclusion: a child's raw probability is p_child / p_parent, so it fires with p_child overall
    cfg = SynthConfig(num_features=16, hidden_dim=8, seed=0,
                      firing_probability=LinearFiringProbabilityConfig(max_prob=0.6, min_prob=0.05),
                      hierarchy=HierarchyConfig(total_root_nodes=4, branching_factor=3, max_depth=1,
                                                compensate_probabilities=True))
    m = make_synth_model(cfg)
    base = cfg.firing_probability.generate(16)
    assert (m.firing_probabilities[4:] > base[4:]).all()
    n = 40_000
    _, acts = m.sample(n, generator=gen(4))
    assert_binomial((acts > 0).float().mean(0), base, n)


def test_scale_children_by_parent() -> None:
    cfg = SynthConfig(num_features=3, hidden_dim=4, seed=0, firing_probability=ConstantFiringProbabilityConfig(1.0),
                      mean_firing_magnitudes=2.0, std_firing_magnitudes=0.3,
                      hierarchy=HierarchyConfig(total_root_nodes=1, branching_factor=2, max_depth=1,
                                                scale_children_by_parent=True))
    _, acts = make_synth_model(cfg).sample(1000, generator=gen(5))
    child_raw = acts[:, 1:] / (acts[:, :1] / 2.0)  # undo the scaling: raw child draws ~ N(2, 0.3^2)
    assert abs(child_raw.mean().item() - 2.0) < 0.05 and abs(child_raw.std().item() - 0.3) < 0.05


def test_a_node_without_feature_passes_its_parents_gate_down() -> None:
    """hierarchy.json may hold grouping nodes (feature_index null): their children are gated by the nearest
    ancestor with a feature, and can be exclusive."""
    tree = {"roots": [{"feature_index": 0, "children": [
        {"feature_index": None, "mutually_exclusive_children": True,
         "children": [{"feature_index": 1}, {"feature_index": 2}, {"feature_index": 3}]}]}]}
    base = make_synth_model(SynthConfig(num_features=5, hidden_dim=4, seed=0,
                                        firing_probability=ConstantFiringProbabilityConfig(0.6)))
    m = replace(base, hierarchy=Hierarchy.from_dict(tree))
    assert m.hierarchy.parents == {0: -1, 1: 0, 2: 0, 3: 0}
    n = 20_000
    _, acts = m.sample(n, generator=gen(9))
    on = acts > 0
    assert not (on[:, 1:4].any(1) & ~on[:, 0]).any() and (on[:, 1:4].sum(1) <= 1).all()
    # given feature 0: none of 1-3 fires with 0.4^3; one of them fires otherwise
    assert abs(on[on[:, 0], 1:4].any(1).float().mean().item() - (1 - 0.4**3)) < 0.02
    assert_binomial(on[:, 4].float().mean().reshape(1), torch.tensor([0.6]), n)


# --- correlation -------------------------------------------------------------------------------------------------


def test_correlation_keeps_marginals_and_correlates_firing() -> None:
    cfg = SynthConfig(num_features=64, hidden_dim=8, seed=0, firing_probability=ConstantFiringProbabilityConfig(0.2),
                      correlation=LowRankCorrelationConfig(rank=4, correlation_scale=0.3))
    m = make_synth_model(cfg)
    n = 30_000
    _, acts = m.sample(n, generator=gen(6))
    on = (acts > 0).float()
    assert_binomial(on.mean(0), m.firing_probabilities, n)
    phi = torch.corrcoef(on.T)  # [64, 64] firing correlation
    implied = m.correlation_factor @ m.correlation_factor.T  # latent Gaussian correlation off the diagonal
    upper = torch.triu_indices(64, 64, offset=1)
    order = implied[upper[0], upper[1]].argsort()
    top, bottom = order[-20:], order[:20]
    top_phi, bottom_phi = phi[upper[0][top], upper[1][top]], phi[upper[0][bottom], upper[1][bottom]]
    assert (top_phi > 0).all() and top_phi.mean() > 0.1
    assert (bottom_phi < 0).all()


# --- save / load -------------------------------------------------------------------------------------------------

TENSORS = ("feature_vectors", "bias", "firing_probabilities", "mean_firing_magnitudes", "std_firing_magnitudes",
           "correlation_factor", "correlation_diag")


def test_save_load_round_trip_is_exact(tmp_path) -> None:
    m = make_synth_model(full_config(seed=None))  # unseeded: only the files can reproduce it
    m.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {
        "synthetic_model_config.json", "synthetic_model.safetensors", "hierarchy.json"}
    back = load_synth_model(tmp_path / "m")
    assert back.cfg == m.cfg and back.hierarchy == m.hierarchy
    for name in TENSORS:
        assert torch.equal(getattr(back, name), getattr(m, name)), name
    assert all(torch.equal(x, y) for x, y in zip(back.sample(300, gen(0)), m.sample(300, gen(0))))


def test_files_without_saelab_extras_rebuild_like_saelens(tmp_path) -> None:
    """SAELens's files hold no magnitudes, and may lack hierarchy.json: they are rebuilt from the seeded config."""
    m = make_synth_model(full_config(seed=3))
    m.save(tmp_path)
    weights = load_file(tmp_path / "synthetic_model.safetensors")
    save_file({k: weights[k] for k in ("feature_vectors", "bias", "firing_probabilities")},
              tmp_path / "synthetic_model.safetensors")
    (tmp_path / "hierarchy.json").unlink()
    back = load_synth_model(tmp_path)
    assert back.hierarchy == m.hierarchy
    for name in TENSORS:
        assert torch.equal(getattr(back, name), getattr(m, name)), name


def test_saving_without_hierarchy_removes_a_stale_one(tmp_path) -> None:
    make_synth_model(full_config()).save(tmp_path)
    make_synth_model(SynthConfig(num_features=300, hidden_dim=24, seed=0)).save(tmp_path)
    assert not (tmp_path / "hierarchy.json").exists()
    assert load_synth_model(tmp_path).hierarchy is None


def _break(tmp_path, what: str) -> str:
    """Save a model, damage one file; return the name the error should carry."""
    make_synth_model(full_config()).save(tmp_path)
    weights = tmp_path / "synthetic_model.safetensors"
    if what == "no config":
        (tmp_path / "synthetic_model_config.json").unlink()
        return "synthetic_model_config.json"
    if what == "bad json":
        (tmp_path / "synthetic_model_config.json").write_text("{not json")
        return "synthetic_model_config.json"
    if what == "bad config":
        (tmp_path / "synthetic_model_config.json").write_text(json.dumps({"num_features": 0, "hidden_dim": 4}))
        return "num_features"
    if what == "no weights":
        weights.unlink()
        return "synthetic_model.safetensors"
    if what == "garbled weights":
        weights.write_bytes(b"\x00\x01junk")
        return "synthetic_model.safetensors"
    if what == "missing tensor":
        save_file({"feature_vectors": torch.zeros(300, 24)}, weights)
        return "bias"
    if what == "wrong shape":
        t = load_file(weights)
        save_file({**t, "feature_vectors": torch.zeros(300, 23)}, weights)
        return "feature_vectors"
    (tmp_path / "hierarchy.json").write_text(json.dumps({"roots": [{"feature_index": 999, "children": []}]}))
    return "999"


@pytest.mark.parametrize("what", ["no config", "bad json", "bad config", "no weights", "garbled weights",
                                  "missing tensor", "wrong shape", "bad hierarchy"])
def test_damaged_files_raise_format_error_naming_them(tmp_path, what: str) -> None:
    expected = _break(tmp_path, what)
    with pytest.raises(FormatError, match=expected):
        load_synth_model(tmp_path)


def test_a_missing_directory_is_a_format_error(tmp_path) -> None:
    with pytest.raises(FormatError, match="nowhere"):
        load_synth_model(tmp_path / "nowhere")


# --- configs -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [SynthConfig(num_features=10, hidden_dim=3), full_config(),
                                 SynthConfig(num_features=10, hidden_dim=3, bias=False,
                                             firing_probability=ConstantFiringProbabilityConfig(0.3),
                                             hierarchy=HierarchyConfig(branching_factor=3, max_depth=1))])
def test_config_dict_round_trip(cfg: SynthConfig) -> None:
    d = cfg.to_dict()
    assert SynthConfig.from_dict(d) == cfg
    assert SynthConfig.from_dict(json.loads(json.dumps(d))).to_dict() == d


def test_config_dict_has_saelens_keys() -> None:
    d = full_config().to_dict()
    assert list(d) == ["num_features", "hidden_dim", "firing_probability", "hierarchy", "orthogonalization",
                       "correlation", "std_firing_magnitudes", "mean_firing_magnitudes", "bias", "dtype", "seed"]
    assert d["firing_probability"] == {"exponent": 0.6, "max_prob": 0.3, "min_prob": 0.01,
                                       "generator_name": "zipfian"}
    assert d["hierarchy"]["branching_factor"] == [2, 4]
    assert d["std_firing_magnitudes"]["generator_name"] == "folded_normal"


@pytest.mark.parametrize("make, field", [
    (lambda: SynthConfig(num_features=0, hidden_dim=4), "num_features"),
    (lambda: SynthConfig(num_features=4, hidden_dim=-1), "hidden_dim"),
    (lambda: SynthConfig(num_features=4, hidden_dim=4, dtype="float64"), "dtype"),
    (lambda: HierarchyConfig(branching_factor=1), "branching_factor"),
    (lambda: HierarchyConfig(mutually_exclusive_portion=1.5), "mutually_exclusive_portion"),
    (lambda: ZipfianFiringProbabilityConfig(max_prob=0.1, min_prob=0.5), "min_prob"),
    (lambda: LowRankCorrelationConfig(rank=0), "rank"),
    (lambda: FoldedNormalMagnitudeConfig(std=0.0), "std"),
    (lambda: SynthConfig.from_dict({"num_features": 4, "hidden_dim": 4, "colour": 1}), "colour"),
    (lambda: SynthConfig.from_dict({"num_features": 4, "hidden_dim": 4,
                                    "firing_probability": {"generator_name": "pareto"}}), "generator_name"),
    (lambda: SynthConfig.from_dict({"num_features": 4, "hidden_dim": 4,
                                    "firing_probability": {"generator_name": "zipfian", "slope": 2}}), "slope"),
])
def test_bad_config_names_the_field(make, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        make()
