"""Named synthetic worlds (`saelab synth OUT --preset NAME`): SAELens `SyntheticModelConfig` dicts."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, choices_message

PRESETS: dict[str, dict[str, Any]] = {
    "synthsaebench-4k": {
        "num_features": 4096, "hidden_dim": 256,
        "firing_probability": {"generator_name": "zipfian", "exponent": 0.5, "max_prob": 0.4, "min_prob": 0.0005},
        "hierarchy": {"total_root_nodes": 32, "branching_factor": 4, "max_depth": 3,
                      "mutually_exclusive_portion": 1.0, "mutually_exclusive_min_depth": 0,
                      "mutually_exclusive_max_depth": None, "compensate_probabilities": True,
                      "scale_children_by_parent": False},
        "orthogonalization": {"num_steps": 100, "lr": 0.0003, "chunk_size": 1024},
        "correlation": {"rank": 25, "correlation_scale": 0.1, "seed": None},
        "std_firing_magnitudes": {"generator_name": "folded_normal", "mean": 0.5, "std": 0.5, "min_value": None,
                                  "max_value": None},
        "mean_firing_magnitudes": {"generator_name": "linear", "start": 5.0, "end": 4.0},
        "bias": True, "dtype": "float32", "seed": 1234,
    },
}
"""`synthsaebench-4k`: SynthSAEBench-16k's config (SAELens docs: 16,384 features in 768 dimensions, Zipfian 0.5 /
0.4 / 5e-4, 128 roots x branching 4 x depth 3 with every parent's children mutually exclusive and probability
compensation, rank-25 correlations at scale 0.1, 100 orthogonalisation steps, magnitudes linear 5 -> 4 with
folded-normal spread) at a quarter of the features and a third of the dimensions: 4,096 x 256 with 32 roots, so
the hierarchy covers the same 66% of the features (true L0 about 16). Seed 1234, not a trainer's: the same seed
and shape would draw the true dictionary as a trainer's initial decoder."""


def scaled(d: dict[str, Any], num_features: int, hidden_dim: int) -> dict[str, Any]:
    """A preset at another size: the hierarchy's roots scaled with the features (the same share in trees)."""
    out = {**d, "num_features": num_features, "hidden_dim": hidden_dim}
    if out.get("hierarchy"):
        roots = max(1, round(d["hierarchy"]["total_root_nodes"] * num_features / d["num_features"]))
        out["hierarchy"] = {**d["hierarchy"], "total_root_nodes": roots}
    return out


def preset(name: str) -> dict[str, Any]:
    """A copy of the preset's config dict; ConfigError naming --preset for an unknown name."""
    if name not in PRESETS:
        raise ConfigError(choices_message("--preset", name, sorted(PRESETS)))
    import copy

    return copy.deepcopy(PRESETS[name])
