"""saelab's ground-truth metrics vs SAELens's `eval_sae_on_synthetic_data`, on a dictionary saelab trained.

The other direction of tests/evals/test_ground_truth.py (which loads SAEs SAELens trained): a
saelab-native dictionary is exported with `export_saelens`, SAELens loads the export with its own
`SAE.load_from_disk` and evaluates it on samples of a synthetic model (SAELens's layout:
synthetic_model_config.json + synthetic_model.safetensors); saelab evaluates the native dictionary
on exactly the same samples. Prints both and the largest |difference|.

Run with the SAELens environment's python (saelab is put on sys.path from src/):

    .venv-saelens/bin/python bench/synth_agreement.py --dictionary DIR --synthetic DIR [--out FILE.json]

A --synthetic directory that does not exist is made by SAELens (`SyntheticModel(...).save`); a
--dictionary that does not exist is trained by saelab's `DictionaryTrainer` on samples of that model
(--architecture topk or batchtopk).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from saelab.coders import SparseCoder, export_saelens  # noqa: E402
from saelab.evals.ground_truth import ground_truth_metrics  # noqa: E402


class Replay:
    """An activation generator whose `.sample(n)` returns the next n stored feature activations."""

    def __init__(self, feature_acts: torch.Tensor) -> None:
        self.feature_acts, self.pos = feature_acts, 0

    def sample(self, batch_size: int) -> torch.Tensor:
        out = self.feature_acts[self.pos:self.pos + batch_size]
        assert out.shape[0] == batch_size, "replay ran out of stored samples"
        self.pos += batch_size
        return out

    __call__ = sample


def make_synthetic(directory: Path, num_features: int, hidden_dim: int) -> None:
    from sae_lens.synthetic.hierarchy import HierarchyConfig
    from sae_lens.synthetic.synthetic_model import LowRankCorrelationConfig, SyntheticModel, SyntheticModelConfig

    cfg = SyntheticModelConfig(
        num_features=num_features, hidden_dim=hidden_dim,
        hierarchy=HierarchyConfig(total_root_nodes=num_features // 16, branching_factor=3, max_depth=2,
                                  mutually_exclusive_portion=0.5, compensate_probabilities=True),
        correlation=LowRankCorrelationConfig(rank=8, correlation_scale=0.1, seed=0),
        std_firing_magnitudes=0.2, seed=0)
    SyntheticModel(cfg).save(directory)
    print(f"made synthetic model {directory} with SAELens ({num_features} features in {hidden_dim} dimensions)")


def train_saelab(directory: Path, model, architecture: str, d_sae: int, k: int, steps: int, batch: int) -> None:
    """Train a saelab dictionary with DictionaryTrainer on the synthetic model's samples; save it natively."""
    from saelab.train.config import DictionarySpec, TrainConfig
    from saelab.train.trainer import DictionaryTrainer, coder_config

    d = model.cfg.hidden_dim
    spec = DictionarySpec(name=directory.name, hookpoint="synthetic", d_sae=d_sae, k=k, architecture=architecture)
    config = TrainConfig(dictionaries=(spec,), lr=3e-3, encoder_dtype="float32", dead_tokens=200_000)
    trainer = DictionaryTrainer(spec, coder_config(spec, d, d, "synthetic", None, "synthetic"), config, steps)
    for _ in range(steps):
        x = model.sample(batch)  # [batch, d]
        metrics = trainer.step(x, x)
    trainer.coder.save(directory)
    print(f"trained saelab {architecture} d_sae={d_sae} k={k}: {steps} steps of {batch}, last step "
          + ", ".join(f"{key} {value:.4g}" for key, value in metrics.items() if isinstance(value, float)))


def _flat(d: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in d.items():
        out.update(_flat(value, f"{prefix}{key}/") if isinstance(value, dict) else {prefix + key: value})
    return out


def compare(coder: SparseCoder, model, n_samples: int, batch: int, seed: int) -> dict:
    """Both libraries' metrics on the same n_samples samples; {saelens, saelab, diff, max_abs_diff}."""
    from sae_lens import SAE
    from sae_lens.synthetic.evals import eval_sae_on_synthetic_data

    torch.manual_seed(seed)
    feature_acts = model.activation_generator.sample(n_samples)  # [n, F]
    with torch.no_grad():  # per eval batch, as SAELens's eval remakes it
        hidden = torch.cat([model.feature_dict(chunk) for chunk in feature_acts.split(batch)])  # [n, d]
    with tempfile.TemporaryDirectory() as tmp:
        export_saelens(coder, tmp)
        sae = SAE.load_from_disk(tmp)
        theirs = eval_sae_on_synthetic_data(sae, model.feature_dict, Replay(feature_acts), num_samples=n_samples,
                                            batch_size=batch).to_dict()
    ours = ground_truth_metrics(coder, model.feature_dict.feature_vectors.detach(),
                                zip(hidden.split(batch), feature_acts.split(batch)))
    a, b = _flat(theirs), _flat(ours.saelens_dict())
    diff = {key: abs(a[key] - b[key]) for key in a}
    return {"saelens_class": type(sae).__name__, "n_samples": n_samples, "saelens": theirs,
            "saelab": ours.to_dict(), "abs_diff": diff, "max_abs_diff": max(diff.values())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dictionary", type=Path, required=True, help="saelab-native dictionary directory")
    p.add_argument("--synthetic", type=Path, required=True, help="synthetic model directory (SAELens layout)")
    p.add_argument("--architecture", default="topk", choices=["topk", "batchtopk"], help="when training")
    p.add_argument("--num-features", type=int, default=512)
    p.add_argument("--hidden-dim", type=int, default=64)
    p.add_argument("--d-sae", type=int, default=512)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--n-samples", type=int, default=32768)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, help="write both results and the differences as JSON")
    args = p.parse_args()
    from sae_lens.synthetic.synthetic_model import SyntheticModel

    if not args.synthetic.exists():
        make_synthetic(args.synthetic, args.num_features, args.hidden_dim)
    model = SyntheticModel.load_from_disk(args.synthetic)
    if not args.dictionary.exists():
        torch.manual_seed(args.seed)
        train_saelab(args.dictionary, model, args.architecture, args.d_sae, args.k, args.steps, 1024)
    coder = SparseCoder.load(args.dictionary)
    result = compare(coder, model, args.n_samples, args.batch, args.seed)
    saelens, saelab = _flat(result["saelens"]), _flat(result["saelab"])
    print(f"{coder.cfg.architecture} d_sae={coder.d_sae} (SAELens loads the export as {result['saelens_class']}), "
          f"{args.n_samples} samples, {model.cfg.num_features} true features in {model.cfg.hidden_dim} dimensions")
    print(f"{'metric':<28}{'SAELens':>14}{'saelab':>14}{'|diff|':>11}")
    for key, diff in result["abs_diff"].items():
        print(f"{key:<28}{saelens[key]:>14.6f}{saelab[key]:>14.6f}{diff:>11.2e}")
    print(f"max |diff| {result['max_abs_diff']:.2e}")
    print("saelab additions: " + ", ".join(f"{key.removeprefix('saelab/')} {value:.4g}" if isinstance(value, float)
                                           else f"{key.removeprefix('saelab/')} {value}"
                                           for key, value in saelab.items() if key.startswith("saelab/")))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
