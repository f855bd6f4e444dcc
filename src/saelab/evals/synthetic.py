"""`saelab eval --ground-truth DIR`: a dictionary scored against the true features of a synthetic model.

The metrics are `ground_truth.ground_truth_metrics` (SAELens's `eval_sae_on_synthetic_data`, to 1e-7, plus
saelab's recovery counts) on `n_samples` samples drawn from the synthetic model with a generator seeded by
`seed`, apart from every training step's. Written to `out/metrics.json`, `summary.txt` and `cfg.json` (last: a
rerun with the same dictionary, synthetic model and settings reads the result back).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._io import cfg_matches, read_json, write_cfg, write_json, write_text
from ..coders import Selector, load_resolved, resolve_dictionary
from ..errors import ArtifactError, ConfigError
from ..latents.manifest import dictionary_hash
from ..lock import hold_directory
from ..synth import load_synth_model
from ..train.synthetic import synthetic_hash
from ..workspace import Workspace, difference
from .ground_truth import GroundTruthResult, ground_truth_metrics

EVAL_SEED_OFFSET = 2**30
"""Evaluation samples come from generators seeded `EVAL_SEED_OFFSET + seed`: no training run draws them (their
steps use seed × 1,000,003 + step with small seeds)."""
BATCH = 8192


def synthetic_identity(path: Path) -> dict[str, Any]:
    return {"synthetic_model": str(Path(path).resolve()), "synthetic_hash": synthetic_hash(path)}


def summary_lines(r: GroundTruthResult, name: str, synthetic: str) -> list[str]:
    """What the numbers say, with their references: chance MCC of a random decoder, the true L0."""
    c, m = r.classification, r.matched
    return [
        f"{name} against the true features of {synthetic} ({r.n_features:,} features; {r.n_samples:,} samples)",
        f"MCC {r.mcc:.3f} (mean |cos| of Hungarian-matched decoder rows and true features; 1 = every feature "
        f"recovered); {r.recovered_at_0_9:,} of {r.n_features:,} true features have a latent at |cos| ≥ 0.9, "
        f"{r.recovered_at_0_7:,} at ≥ 0.7",
        f"latents as detectors of their closest feature: precision {c.precision:.3f}, recall {c.recall:.3f}, "
        f"F1 {c.f1_score:.3f} (dead latents count 0, as SAELens); over the matched pairs: F1 {m.f1_score:.3f}",
        f"explained variance {r.explained_variance:.3f}, shrinkage {r.shrinkage:.3f}, L0 {r.sae_l0:.1f} "
        f"(true L0 {r.true_l0:.1f}), {r.dead_latents:,} of {r.d_sae:,} latents dead on these samples, uniqueness "
        f"{r.uniqueness:.3f}",
    ]


def run_ground_truth(spec: str, synthetic: str | Path, workspace: Workspace, *, n_samples: int = 100_000,
                     seed: int = 0, out_dir: str | Path | None = None, overwrite: bool = False,
                     selector: Selector | None = None) -> dict[str, Any]:
    """Score dictionary `spec` against the synthetic model at `synthetic`; returns the metrics (with
    `summary_text`, `out_dir`, `reused`).

    Example:
        >>> m = run_ground_truth("synth-topk", "worlds/synth-4k", Workspace.at("ws"))
        >>> m["mcc"], m["classification"]["f1_score"]
    """
    if n_samples <= 0:
        raise ConfigError(f"n_samples: got {n_samples}; expected a positive number of samples, e.g. 100000.")
    model = load_synth_model(synthetic)
    resolved = resolve_dictionary(spec, workspace=workspace, selector=selector)
    coder = load_resolved(resolved, device="cpu", site=(selector or Selector()).site)
    if coder.cfg.d_in != model.feature_vectors.shape[1]:
        raise ConfigError(f"--ground-truth: {synthetic} has hidden_dim {model.feature_vectors.shape[1]}, but "
                          f"{resolved.name} reads d_in {coder.cfg.d_in}; give the synthetic model it was trained on.")
    out = Path(out_dir) if out_dir is not None else workspace.evals(f"{resolved.name}-ground-truth")
    want = {"kind": "ground_truth", "dictionary_hash": dictionary_hash(coder), **synthetic_identity(Path(synthetic)),
            "n_samples": n_samples, "seed": seed}
    with hold_directory(out):
        if cfg_matches(out, want) and not overwrite:
            return {**read_json(out / "metrics.json"), "out_dir": str(out), "reused": True}
        if (out / "cfg.json").exists() and not overwrite:
            raise ArtifactError(f"{out} holds a ground-truth evaluation of other inputs "
                                f"({difference(read_json(out / 'cfg.json'), want)}); --overwrite to replace it, "
                                "or --out for another directory.")
        r = _score(coder, model, n_samples, seed)
        text = "\n".join(summary_lines(r, resolved.name, str(synthetic))) + "\n"
        trained_on = coder.cfg.extra.get("training", {}).get("synthetic_hash")
        if trained_on is not None and trained_on != want["synthetic_hash"]:
            text += "note: this dictionary was trained on another synthetic model (its cfg.json's hash differs)\n"
        metrics = {**r.to_dict(), "summary_text": text}
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", metrics)
        write_text(out / "summary.txt", text)
        write_cfg(out, {**want, "dictionary": spec})  # last: the result is whole
    return {**metrics, "out_dir": str(out), "reused": False}


def _score(coder: Any, model: Any, n_samples: int, seed: int) -> GroundTruthResult:
    import torch

    gen = torch.Generator().manual_seed(EVAL_SEED_OFFSET + seed)
    sizes = [min(BATCH, n_samples - i) for i in range(0, n_samples, BATCH)]
    return ground_truth_metrics(coder, model.feature_vectors, (model.sample(n, generator=gen) for n in sizes))
