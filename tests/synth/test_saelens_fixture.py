"""A synthetic model saved by SAELens's own `SyntheticModel.save` (tests/fixtures/make_synth_fixture.py) loads into
saelab as the same model and samples the distribution SAELens's own samples of it showed."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from saelab.synth import SynthConfig, generate_hierarchy, load_synth_model, make_synth_model

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "saelens_synth"


def reference() -> dict:
    return json.loads((FIXTURE / "saelens_reference.json").read_text())


def test_loads_the_saelens_files_exactly() -> None:
    m = load_synth_model(FIXTURE)
    stored = load_file(FIXTURE / "synthetic_model.safetensors")
    for name in ("feature_vectors", "bias", "firing_probabilities", "correlation_factor", "correlation_diag"):
        assert torch.equal(getattr(m, name), stored[name]), name
    raw = json.loads((FIXTURE / "synthetic_model_config.json").read_text())
    assert m.cfg.to_dict() == raw
    assert m.hierarchy.to_dict() == json.loads((FIXTURE / "hierarchy.json").read_text())
    # SAELens rebuilds the magnitudes from the config on load; so does saelab, to the same numbers
    ref = reference()
    assert m.mean_firing_magnitudes.tolist() == ref["mean_firing_magnitudes"]
    assert m.std_firing_magnitudes.tolist() == ref["std_firing_magnitudes"]


def test_building_from_the_config_makes_saelens_model() -> None:
    cfg = SynthConfig.from_dict(json.loads((FIXTURE / "synthetic_model_config.json").read_text()))
    stored = load_file(FIXTURE / "synthetic_model.safetensors")
    built = make_synth_model(cfg)
    assert built.hierarchy == generate_hierarchy(cfg.num_features, cfg.hierarchy, cfg.seed + 3)
    assert built.hierarchy.to_dict() == json.loads((FIXTURE / "hierarchy.json").read_text())
    for name in ("bias", "firing_probabilities", "correlation_factor", "correlation_diag"):
        assert torch.equal(getattr(built, name), stored[name]), name
    # orthogonalisation: the same optimisation with an analytic gradient, equal up to rounding
    torch.testing.assert_close(built.feature_vectors, stored["feature_vectors"], atol=1e-4, rtol=0)


def test_samples_match_saelens_samples() -> None:
    ref = reference()
    m = load_synth_model(FIXTURE)
    n, batch, gen = ref["n_samples"], 20_000, torch.Generator().manual_seed(0)
    fired = torch.zeros(m.cfg.num_features, dtype=torch.float64)
    total = torch.zeros_like(fired)
    on_parent_off = exclusive = 0
    parents = {f: p for f, p in m.hierarchy.parents.items() if p >= 0}
    groups = [[c.feature_index for c in node.children] for node in _nodes(m.hierarchy.roots)
              if node.mutually_exclusive_children]
    for _ in range(n // batch):
        _, acts = m.sample(batch, generator=gen)
        on = acts > 0
        fired += on.sum(0)
        total += acts.sum(0)
        on_parent_off += int((on[:, list(parents)] & ~on[:, list(parents.values())]).sum())
        exclusive += sum(int((on[:, g].sum(1) > 1).sum()) for g in groups)
    assert on_parent_off == ref["hierarchy_violations"] == 0
    assert exclusive == ref["exclusion_violations"] == 0
    ours, theirs = fired / n, torch.tensor(ref["firing_rate"], dtype=torch.float64)
    pooled = (ours + theirs) / 2
    se = (pooled * (1 - pooled) * 2 / n).sqrt()
    bad = ((ours - theirs).abs() > 5 * se + 1e-6).nonzero().flatten().tolist()
    assert not bad, [(i, ours[i].item(), theirs[i].item()) for i in bad[:5]]
    assert abs(ours.sum().item() - ref["mean_l0"]) < 0.02 * ref["mean_l0"]
    # mean activation when firing: standard error from the per-feature std magnitude
    counts = fired.clamp(min=1)
    ours_mean, theirs_mean = total / counts, torch.tensor(ref["mean_when_firing"], dtype=torch.float64)
    se_mean = m.std_firing_magnitudes.double() * (2 / counts).sqrt()
    bad = ((ours_mean - theirs_mean).abs() > 5 * se_mean + 1e-4).nonzero().flatten().tolist()
    assert not bad, [(i, ours_mean[i].item(), theirs_mean[i].item()) for i in bad[:5]]


def _nodes(roots):
    stack = list(roots)
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        yield node
