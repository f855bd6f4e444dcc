"""A scaled-down SynthSAEBench: saelab's trainer against SAELens's on the same synthetic samples, scored against
the true features (issue #26).

    .venv-saelens/bin/python bench/synth.py [--samples 2000000] [--out bench/synth.json]

Runs in the peers environment (`make bench-peers`: sae-lens 6.54.12) with saelab on sys.path. One synthetic
world, made by SAELens's own `SyntheticModel` and read by saelab's `load_synth_model` (the same feature vectors,
firing probabilities, hierarchy and correlations), feeds both trainers the SAME batches: step i's samples are
drawn by saelab's sampler from a generator seeded by (seed, i) (`saelab.train.synthetic.SynthSource`), and
SAELens's trainer reads them through its data-provider interface. Both train at equal L0 (k = the world's true
L0, rounded) for the same samples, each with its own recipe as users run it: saelab `run_synthetic` (its default
rate × --lr-scale, AuxK, decay), SAELens `train_toy_sae`'s trainer settings (Adam 3e-4 constant, its AuxK).

Every SAE is scored by saelab's `ground_truth_metrics` on the same held-out samples (equal to SAELens's
`eval_sae_on_synthetic_data` to 1e-7 on the same SAE and samples (SAELens and saelab SAEs alike:
SAEs in tests and `bench/synth_agreement.py`).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from saelab.coders import load_dictionary  # noqa: E402
from saelab.evals.ground_truth import ground_truth_metrics  # noqa: E402
from saelab.synth import load_synth_model  # noqa: E402
from saelab.synth.presets import preset, scaled  # noqa: E402
from saelab.train.config import DictionarySpec, TrainConfig  # noqa: E402
from saelab.train.synthetic import SynthSource, run_synthetic, step_generator  # noqa: E402
from saelab.workspace import Workspace  # noqa: E402

WORLD = preset("synthsaebench-4k")
"""SynthSAEBench-16k's config at 4,096 features in 256 dimensions (`saelab.synth.presets`). --features /
--hidden-dim scale it (hierarchy roots in proportion; the rest kept)."""
ARCHITECTURES = ("topk", "batchtopk", "matryoshka")
D_SAE = 4096
MATRYOSHKA_WIDTHS = (128, 512, 1024, 2048, 4096)
"""Matryoshka prefixes (d_sae/32, /8, /4, /2, all), scaled with --d-sae."""
BATCH = 1024
EVAL_SAMPLES = 100_000


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def make_world(directory: Path):
    from sae_lens.synthetic import SyntheticModel, SyntheticModelConfig

    t0 = time.perf_counter()
    SyntheticModel(SyntheticModelConfig.from_dict(WORLD)).save(directory)
    return load_synth_model(directory), time.perf_counter() - t0


def train_saelab(ws: Path, world, world_dir: Path, arch: str, k: int, samples: int, lr_scale: float):
    groups = tuple(b - a for a, b in zip((0,) + MATRYOSHKA_WIDTHS, MATRYOSHKA_WIDTHS)) if arch == "matryoshka" else None
    spec = DictionarySpec(f"saelab-{arch}", "synthetic", d_sae=D_SAE, k=k, architecture=arch, group_sizes=groups)
    config = TrainConfig((spec,), n_tokens=samples, batch_size=BATCH, shuffle_windows=BATCH, lr_scale=lr_scale,
                         dead_tokens=BATCH * 100, checkpoint_every=10**9)
    t0 = time.perf_counter()
    path, = run_synthetic(config, Workspace.at(ws), world, world_dir, progress=False, heldout_samples=4096,
                          run_name=f"saelab-{arch}")
    return load_dictionary(path), time.perf_counter() - t0


class _Identity(torch.nn.Module):
    """SAELens's synthetic data iterator maps feature activations through a feature dictionary; here the
    'activations' are already the hidden samples, so the dictionary is the identity."""

    def __init__(self) -> None:
        super().__init__()
        self.feature_vectors = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


SAELENS_DEAD_WINDOW: int | None = None
"""--saelens-dead-window: steps without firing before SAELens's AuxK treats a latent as dead (train_toy_sae
fixes 1,000; None keeps it)."""


def _saelens_trainer_config(**kw):
    from sae_lens.config import SAETrainerConfig

    if SAELENS_DEAD_WINDOW is not None:
        kw["dead_feature_window"] = SAELENS_DEAD_WINDOW
    return SAETrainerConfig(**kw)


def train_saelens(out: Path, world, arch: str, k: int, samples: int):
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.matryoshka_batchtopk_sae import (
        MatryoshkaBatchTopKTrainingSAE,
        MatryoshkaBatchTopKTrainingSAEConfig,
    )
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.synthetic import training
    from sae_lens.synthetic.training import train_toy_sae

    training.SAETrainerConfig = _saelens_trainer_config  # its one fixed setting a user might change

    d_in = int(world.feature_vectors.shape[1])
    if arch == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=D_SAE, k=k))
    elif arch == "batchtopk":
        sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=d_in, d_sae=D_SAE, k=k))
    else:
        sae = MatryoshkaBatchTopKTrainingSAE(MatryoshkaBatchTopKTrainingSAEConfig(
            d_in=d_in, d_sae=D_SAE, k=k, matryoshka_widths=list(MATRYOSHKA_WIDTHS)))
    batches = iter(b["synthetic"] for c in range(SynthSource(world, BATCH, 0, samples).n_chunks)
                   for b in SynthSource(world, BATCH, 0, samples).steps(c))
    t0 = time.perf_counter()
    train_toy_sae(sae, _Identity(), lambda n: next(batches), training_samples=samples, batch_size=BATCH)
    seconds = time.perf_counter() - t0
    sae.save_inference_model(str(out))
    return load_dictionary(out), seconds


def score(coder, world) -> dict:
    gen = step_generator(99, 0)  # held-out: no training step draws from this seed
    batches = (world.sample(BATCH * 10, generator=gen) for _ in range(EVAL_SAMPLES // (BATCH * 10)))
    r = ground_truth_metrics(coder, world.feature_vectors, batches)
    c = r.classification
    return {"mcc": r.mcc, "f1": c.f1_score, "precision": c.precision, "recall": c.recall,
            "explained_variance": r.explained_variance, "sae_l0": r.sae_l0, "true_l0": r.true_l0,
            "dead_latents": r.dead_latents, "shrinkage": r.shrinkage, "uniqueness": r.uniqueness,
            "recovered_at_0_9": r.recovered_at_0_9, "recovered_at_0_7": r.recovered_at_0_7, "n_samples": r.n_samples}


class SampleCache:
    """The world, with every training batch drawn once: `sample(n, generator)` keyed by the generator's seed.
    Every run reads the same batches (step i's samples are seeded by (seed, i)), and none pays for sampling."""

    def __init__(self, world) -> None:
        self.world, self.batches = world, {}

    def __getattr__(self, name: str):
        return getattr(self.world, name)

    def sample(self, n: int, generator: torch.Generator):
        key = (generator.initial_seed(), n)
        if key not in self.batches:
            self.batches[key] = self.world.sample(n, generator=generator)[0]
        return self.batches[key], None


def draw_all(cache: SampleCache, samples: int) -> float:
    """Draw every training batch into the cache; the seconds it took."""
    src = SynthSource(cache, BATCH, 0, samples)
    t0 = time.perf_counter()
    for c in range(src.n_chunks):
        for _ in src.steps(c):
            pass
    return time.perf_counter() - t0


def main() -> None:
    global D_SAE, BATCH, MATRYOSHKA_WIDTHS, SAELENS_DEAD_WINDOW
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2_000_000)
    ap.add_argument("--lr-scale", type=float, default=1.0)
    ap.add_argument("--architectures", default=",".join(ARCHITECTURES))
    ap.add_argument("--features", type=int, default=WORLD["num_features"])
    ap.add_argument("--hidden-dim", type=int, default=WORLD["hidden_dim"])
    ap.add_argument("--d-sae", type=int, default=D_SAE)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--saelens-dead-window", type=int, default=None)
    ap.add_argument("--libraries", default="saelab,saelens")
    ap.add_argument("--out", type=Path, default=Path("bench/synth.json"))
    args = ap.parse_args()
    WORLD.update(scaled(WORLD, args.features, args.hidden_dim))
    D_SAE, BATCH, SAELENS_DEAD_WINDOW = args.d_sae, args.batch, args.saelens_dead_window
    MATRYOSHKA_WIDTHS = tuple(D_SAE // f for f in (32, 8, 4, 2, 1))
    torch.manual_seed(0)
    results: dict = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "world": WORLD, "d_sae": D_SAE,
                     "batch": BATCH, "samples": args.samples, "eval_samples": EVAL_SAMPLES,
                     "lr_scale": args.lr_scale, "saelens_dead_window": args.saelens_dead_window, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        world, results["world_seconds"] = make_world(Path(tmp) / "world")
        true_l0 = float(world.sample(20_000, generator=step_generator(7, 0))[1].gt(0).sum(1).float().mean())
        k = round(true_l0)
        cache = SampleCache(world)
        results.update(true_l0=true_l0, k=k, sampling_seconds=draw_all(cache, args.samples))
        print(f"world: {WORLD['num_features']} features in {WORLD['hidden_dim']} dims, true L0 {true_l0:.1f}, k {k}; "
              f"sampling {results['sampling_seconds']:.0f} s per {args.samples:,} samples", flush=True)
        for arch in args.architectures.split(","):
            for lib in args.libraries.split(","):
                if lib == "saelab":
                    coder, seconds = train_saelab(Path(tmp) / "ws", cache, Path(tmp) / "world", arch, k,
                                                  args.samples, args.lr_scale)
                else:
                    coder, seconds = train_saelens(Path(tmp) / f"saelens-{arch}", cache, arch, k, args.samples)
                row = {"seconds": seconds, **score(coder, world)}
                results["runs"][f"{lib}/{arch}"] = row
                print(f"{lib:8s} {arch:10s} {seconds:6.0f} s  MCC {row['mcc']:.3f}  F1 {row['f1']:.3f}  "
                      f"EV {row['explained_variance']:.3f}  L0 {row['sae_l0']:.1f}  dead {row['dead_latents']}  "
                      f"recovered@0.9 {row['recovered_at_0_9']}", flush=True)
                args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
