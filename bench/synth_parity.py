"""saelab.synth vs SAELens's sae_lens.synthetic, side by side, from one SynthSAEBench-like config.

Runs with the SAELens venv's python (saelab is pure Python and is imported from src/):

    flock /tmp/saelab-cpu.lock .venv-saelens/bin/python bench/synth_parity.py [--samples 100000]

The config is SynthSAEBench-16k's (SAELens docs: Zipfian 0.5 / 0.4 / 5e-4, 128 roots x branching 4 x depth 3,
all children exclusive, compensation, low-rank correlation rank 25 scale 0.1, orthogonalisation 100 steps lr 3e-4,
mean magnitudes linear 5 -> 4, std folded normal (0.5, 0.5)), scaled to 4,096 features x 256 dims and 32 roots so
the hierarchy covers the same 66% of the features. Both libraries build a model from the same dict; each draws
`--samples` samples from its own random stream (SAELens: torch's global RNG seeded 1; saelab: a Generator seeded
2), and the statistics are compared: mean L0, per-feature firing rates (z-scores, by rank bucket), mean magnitude
when firing, hierarchy violations, firing correlation (phi) of the pairs the correlation matrix couples most,
and the |cos| between feature vectors. Then a model saved by SAELens is loaded by saelab (and the reverse), and
both are fed the same seed to see whether they draw the same random numbers in the same order.

In that config the hierarchy gates most frequent features, which dilutes their firing correlation to almost
nothing (in both libraries); a second config without hierarchy and orthogonalisation ("correlation_only")
shows the copula's correlated firing where it can be measured. Writes bench/synth_parity.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sae_lens.synthetic import (  # noqa: E402
    FoldedNormalMagnitudeConfig,
    HierarchyConfig,
    LinearMagnitudeConfig,
    SyntheticModel,
    SyntheticModelConfig,
    ZipfianFiringProbabilityConfig,
    feature_dictionary,
)
from sae_lens.synthetic.synthetic_model import LowRankCorrelationConfig, OrthogonalizationConfig  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from saelab.synth import SynthConfig, load_synth_model, make_synth_model  # noqa: E402

BATCH, PAIRS = 10_000, 200  # pairs: at most PAIRS most and PAIRS least coupled
BUCKETS = [(0, 10), (10, 100), (100, 1000), (1000, 4096)]


def saelens_config(hierarchy: bool = True) -> SyntheticModelConfig:
    """SynthSAEBench-16k's config at 4,096 x 256; hierarchy=False drops the hierarchy and orthogonalisation."""
    return SyntheticModelConfig(
        num_features=4096, hidden_dim=256,
        firing_probability=ZipfianFiringProbabilityConfig(exponent=0.5, max_prob=0.4, min_prob=5e-4),
        hierarchy=HierarchyConfig(total_root_nodes=32, branching_factor=4, max_depth=3, mutually_exclusive_portion=1.0,
                                  compensate_probabilities=True) if hierarchy else None,
        orthogonalization=OrthogonalizationConfig(num_steps=100, lr=3e-4) if hierarchy else None,
        correlation=LowRankCorrelationConfig(rank=25, correlation_scale=0.1),
        std_firing_magnitudes=FoldedNormalMagnitudeConfig(mean=0.5, std=0.5),
        mean_firing_magnitudes=LinearMagnitudeConfig(start=5.0, end=4.0), bias=True, seed=0)


class Stats:
    """Running sums over sampled batches of feature activations [n, F]."""

    def __init__(self, num_features: int, pairs: torch.Tensor, parent: torch.Tensor, groups: list[list[int]]):
        self.n, self.fired = 0, torch.zeros(num_features, dtype=torch.float64)
        self.total = torch.zeros(num_features, dtype=torch.float64)
        self.l0_sq, self.pairs, self.both = 0.0, pairs, torch.zeros(pairs.shape[1], dtype=torch.float64)
        self.parent, self.groups, self.orphans, self.exclusive, self.hidden_norm = parent, groups, 0, 0, 0.0

    def add(self, hidden: torch.Tensor, acts: torch.Tensor) -> None:
        on = acts > 0
        l0 = on.sum(1).double()
        self.n += len(acts)
        self.fired += on.sum(0)
        self.total += acts.sum(0)
        self.l0_sq += float((l0**2).sum())
        self.both += (on[:, self.pairs[0]] & on[:, self.pairs[1]]).sum(0)
        child = (self.parent >= 0).nonzero().flatten()
        self.orphans += int((on[:, child] & ~on[:, self.parent[child]]).sum())
        self.exclusive += sum(int((on[:, g].sum(1) > 1).sum()) for g in self.groups)
        self.hidden_norm += float(hidden.norm(dim=1).sum())

    def rates(self) -> torch.Tensor:
        return self.fired / self.n

    def phi(self) -> torch.Tensor:
        p = self.rates()
        pi, pj, pij = p[self.pairs[0]], p[self.pairs[1]], self.both / self.n
        return (pij - pi * pj) / (pi * (1 - pi) * pj * (1 - pj)).sqrt().clamp(min=1e-12)

    def summary(self) -> dict:
        mean_l0 = float(self.fired.sum()) / self.n
        phi = self.phi()
        half = len(phi) // 2
        top, bottom = phi[:half], phi[half:]
        mag = self.total.sum() / self.fired.sum()
        return {"samples": self.n, "mean_l0": mean_l0, "std_l0": (self.l0_sq / self.n - mean_l0**2) ** 0.5,
                "mean_magnitude_when_firing": float(mag), "mean_hidden_norm": self.hidden_norm / self.n,
                "hierarchy_violations": self.orphans, "exclusion_violations": self.exclusive,
                "pairs": half, "phi_top_pairs": _quantiles(top), "phi_bottom_pairs": _quantiles(bottom),
                "rate_by_rank": {f"{a}-{b - 1}": float(self.rates()[a:b].mean()) for a, b in BUCKETS}}


def _quantiles(x: torch.Tensor) -> dict:
    q = torch.quantile(x.float(), torch.tensor([0.1, 0.5, 0.9]))
    return {"mean": float(x.mean()), "p10": float(q[0]), "p50": float(q[1]), "p90": float(q[2])}


def compare(a: Stats, b: Stats) -> dict:
    """Two-sample z-scores per feature: firing rate, mean magnitude when firing."""
    ra, rb = a.rates(), b.rates()
    p = (a.fired + b.fired) / (a.n + b.n)
    z = (ra - rb) / (p * (1 - p) * (1 / a.n + 1 / b.n)).sqrt().clamp(min=1e-12)
    dphi = a.phi() - b.phi()
    ma, mb = a.total / a.fired.clamp(min=1), b.total / b.fired.clamp(min=1)
    rel = ((ma - mb).abs() / mb.clamp(min=1e-9))[(a.fired > 100) & (b.fired > 100)]
    return {"rate_z_max_abs": float(z.abs().max()), "rate_z_mean_square": float((z**2).mean()),
            "rate_features_abs_z_over_3": int((z.abs() > 3).sum()),
            "rate_features_abs_z_over_4": int((z.abs() > 4).sum()),
            "rate_max_abs_diff": float((ra - rb).abs().max()),
            "magnitude_rel_diff_median": float(rel.median()), "magnitude_rel_diff_max": float(rel.max()),
            # phi's standard error is about 1 / sqrt(n) per sample set
            "phi_max_abs_diff": float(dphi.abs().max()),
            "phi_diff_z_max": float(dphi.abs().max() / (1 / a.n + 1 / b.n) ** 0.5)}


def cosines(vectors: torch.Tensor) -> dict:
    cos = (vectors @ vectors.T).abs().fill_diagonal_(0)
    off = cos[~torch.eye(len(cos), dtype=torch.bool)]
    return {"max_abs_cos": float(off.max()), "mean_abs_cos": float(off.mean()),
            "mean_max_abs_cos": float(cos.max(1).values.mean())}


def structure(model) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """(pairs [2, 2k]: the k most positively, then the k most negatively coupled pairs of the correlation matrix
    among ungated features (no parent) firing with p >= 0.02 (rarer pairs fire together too seldom to measure),
    parent [F] (-1: none), exclusive groups)."""
    parent = torch.full((model.cfg.num_features,), -1, dtype=torch.long)
    groups: list[list[int]] = []
    stack = list(model.hierarchy.roots) if model.hierarchy is not None else []
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        parent[[c.feature_index for c in node.children]] = node.feature_index
        if node.mutually_exclusive_children:
            groups.append([c.feature_index for c in node.children])
    candidates = ((model.firing_probabilities >= 0.02) & (parent < 0)).nonzero().flatten()
    sub = model.correlation_factor[candidates]
    implied = torch.triu(sub @ sub.T, diagonal=1).flatten()
    k = min(PAIRS, len(candidates) * (len(candidates) - 1) // 8)
    idx = torch.cat([implied.topk(k).indices, (-implied).topk(k).indices])
    return candidates[torch.stack([idx // len(sub), idx % len(sub)])], parent, groups


def draw(sample, n: int, stats: Stats) -> float:
    t0 = time.perf_counter()
    for _ in range(n // BATCH):
        stats.add(*sample(BATCH))
    return time.perf_counter() - t0


def built_equal(theirs: SyntheticModel, ours) -> dict:
    gen = theirs.activation_generator
    return {
        "firing_probabilities_equal": torch.equal(gen.firing_probabilities, ours.firing_probabilities),
        "mean_magnitudes_equal": torch.equal(gen.mean_firing_magnitudes, ours.mean_firing_magnitudes),
        "std_magnitudes_equal": torch.equal(gen.std_firing_magnitudes, ours.std_firing_magnitudes),
        "correlation_equal": torch.equal(theirs.correlation_matrix.correlation_factor, ours.correlation_factor)
        and torch.equal(theirs.correlation_matrix.correlation_diag, ours.correlation_diag),
        "hierarchy_equal": (theirs.hierarchy is None and ours.hierarchy is None)
        or theirs.hierarchy.to_dict() == ours.hierarchy.to_dict(),
        "bias_equal": torch.equal(theirs.feature_dict.bias.data, ours.bias),
        "feature_vectors_max_abs_diff": float((theirs.feature_dict.feature_vectors.data - ours.feature_vectors)
                                              .abs().max()),
    }


def round_trips(theirs: SyntheticModel, ours) -> tuple[dict, object]:
    """SAELens-saved -> saelab, saelab-saved -> SAELens: every tensor equal."""
    with tempfile.TemporaryDirectory() as tmp:
        theirs.save(Path(tmp) / "saelens")
        loaded = load_synth_model(Path(tmp) / "saelens")
        ours.save(Path(tmp) / "saelab")
        back = SyntheticModel.load_from_disk(Path(tmp) / "saelab")
    return {"saelens_saved_loaded_by_saelab": {
                **{k: v for k, v in built_equal(theirs, loaded).items() if k != "feature_vectors_max_abs_diff"},
                "feature_vectors_equal": torch.equal(theirs.feature_dict.feature_vectors.data,
                                                     loaded.feature_vectors)},
            "saelab_saved_loaded_by_saelens": {
                **{k: v for k, v in built_equal(back, ours).items() if k != "feature_vectors_max_abs_diff"},
                "feature_vectors_equal": torch.equal(back.feature_dict.feature_vectors.data, ours.feature_vectors)},
            }, loaded


def same_stream(theirs: SyntheticModel, ours, n: int = 2000) -> dict:
    """Both fed the same seed (global RNG vs a Generator): same random numbers in the same order?"""
    torch.manual_seed(5)
    h1, a1 = theirs.sample_with_features(n)
    h2, a2 = ours.sample(n, generator=torch.Generator().manual_seed(5))
    return {"acts_identical": torch.equal(a1, a2), "hidden_max_abs_diff": float((h1 - h2).abs().max())}


def run(sl_cfg: SyntheticModelConfig, samples: int, files: bool) -> dict:
    d = sl_cfg.to_dict()
    cfg = SynthConfig.from_dict(d)
    assert cfg.to_dict() == d
    t0 = time.perf_counter()
    theirs = SyntheticModel(sl_cfg)
    t_theirs = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = make_synth_model(cfg)
    t_ours = time.perf_counter() - t0
    pairs, parent, groups = structure(ours)
    s_theirs, s_ours, s_loaded = (Stats(cfg.num_features, pairs, parent, groups) for _ in range(3))
    torch.manual_seed(1)
    dt_theirs = draw(theirs.sample_with_features, samples, s_theirs)
    gen = torch.Generator().manual_seed(2)
    dt_ours = draw(lambda n: ours.sample(n, generator=gen), samples, s_ours)
    out = {
        "config": d,
        "build": {"saelens_seconds": t_theirs, "saelab_seconds": t_ours, **built_equal(theirs, ours)},
        "feature_vectors": {"saelens": cosines(theirs.feature_dict.feature_vectors.data),
                            "saelab": cosines(ours.feature_vectors)},
        "sampling": {"saelens": {**s_theirs.summary(), "seconds_per_batch": dt_theirs * BATCH / samples},
                     "saelab": {**s_ours.summary(), "seconds_per_batch": dt_ours * BATCH / samples}},
        "compare_saelab_vs_saelens": compare(s_ours, s_theirs),
    }
    if files:
        out["files"], loaded = round_trips(theirs, ours)
        gen_loaded = torch.Generator().manual_seed(3)
        draw(lambda n: loaded.sample(n, generator=gen_loaded), samples, s_loaded)
        out["sampling"]["saelab_loaded_from_saelens_files"] = s_loaded.summary()
        out["compare_saelab_loaded_vs_saelens"] = compare(s_loaded, s_theirs)
        out["same_stream"] = same_stream(theirs, ours)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "synth_parity.json"))
    args = ap.parse_args()
    feature_dictionary.tqdm = lambda *a, **k: tqdm(*a, **{**k, "disable": True})  # one bar per chunk and step
    torch.set_num_threads(2)
    result = {
        "meta": {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.processor()
                 or platform.machine(), "threads": torch.get_num_threads(), "sae_lens": version("sae-lens"),
                 "torch": torch.__version__, "python": platform.python_version(), "samples": args.samples},
        "synthsaebench_4k": run(saelens_config(), args.samples, files=True),
        "correlation_only_4k": run(saelens_config(hierarchy=False), args.samples, files=False),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name in ("synthsaebench_4k", "correlation_only_4k"):
        print(f"\n== {name} ({args.samples:,} samples each)")
        print_table(result[name])


def print_table(r: dict) -> None:
    a, b = r["sampling"]["saelens"], r["sampling"]["saelab"]
    c = r["sampling"].get("saelab_loaded_from_saelens_files", {k: float("nan") for k in a} | {
        "rate_by_rank": {k: float("nan") for k in a["rate_by_rank"]},
        "phi_top_pairs": {"mean": float("nan")}, "phi_bottom_pairs": {"mean": float("nan")}})
    rows = [("mean L0", "mean_l0"), ("std L0", "std_l0"), ("mean magnitude when firing", "mean_magnitude_when_firing"),
            ("mean |x|", "mean_hidden_norm"), ("hierarchy violations", "hierarchy_violations"),
            ("exclusion violations", "exclusion_violations")]
    print(f"{'statistic':34} {'SAELens':>10} {'saelab':>10} {'saelab(load)':>12}")
    for label, key in rows:
        print(f"{label:34} {a[key]:10.4g} {b[key]:10.4g} {c[key]:12.4g}")
    for bucket in a["rate_by_rank"]:
        print(f"{'firing rate, ranks ' + bucket:34} {a['rate_by_rank'][bucket]:10.4g} "
              f"{b['rate_by_rank'][bucket]:10.4g} {c['rate_by_rank'][bucket]:12.4g}")
    for label, key in (("phi, top coupled pairs (mean)", "phi_top_pairs"), ("phi, most anti-coupled (mean)",
                                                                             "phi_bottom_pairs")):
        print(f"{label:34} {a[key]['mean']:10.4g} {b[key]['mean']:10.4g} {c[key]['mean']:12.4g}")
    print(f"{'seconds per 10,000 samples':34} {a['seconds_per_batch']:10.4g} {b['seconds_per_batch']:10.4g}")
    print(f"{'seconds to build':34} {r['build']['saelens_seconds']:10.4g} {r['build']['saelab_seconds']:10.4g}")
    fa, fb = r["feature_vectors"]["saelens"], r["feature_vectors"]["saelab"]
    for key in ("max_abs_cos", "mean_abs_cos", "mean_max_abs_cos"):
        print(f"{'feature vectors ' + key:34} {fa[key]:10.4g} {fb[key]:10.4g}")
    print("saelab vs SAELens per-feature:", json.dumps(r["compare_saelab_vs_saelens"]))
    print("build:", json.dumps(r["build"]))
    for key in ("files", "same_stream"):
        if key in r:
            print(f"{key}:", json.dumps(r[key]))


if __name__ == "__main__":
    main()
