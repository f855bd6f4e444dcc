"""Training runs for the data-parallel tests: run on 2 ranks by torchrun, and on one process by the tests.

Usage (a subprocess of tests/train/test_distributed.py):
    python -m torch.distributed.run --standalone --nproc-per-node 2 dist_worker.py OUT first|resume
Rank 0 saves every run's weights to OUT/<phase>.pt; each rank lists the errors the refusals raised in
OUT/errors.rank-R.json. Every run is tiny and seeded, so the one-process run of the same function is the
reference the test compares against.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from saelab.distributed import barrier, init_from_env, is_main, rank_and_world  # noqa: E402
from saelab.errors import SaelabError  # noqa: E402
from saelab.synth import SynthConfig, make_synth_model  # noqa: E402
from saelab.train import CrosscoderConfig, DictionarySpec, TrainConfig, train, train_crosscoder  # noqa: E402
from saelab.train.source import tensor_reader  # noqa: E402
from saelab.train.synthetic import run_synthetic  # noqa: E402
from saelab.workspace import Workspace  # noqa: E402
from tests.train.fixtures import make_sparse  # noqa: E402

CHECKPOINT_EVERY = 3
UNTIL_STEP = 7  # a "kill" after step 7: the last checkpoint is step 6's


def _weights(coder: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().clone() for k, v in coder.state_dict().items()}


def sae_config(**kw) -> TrainConfig:
    """Four dictionaries from one stream: TopK, BatchTopK, Matryoshka and a transcoder with a skip; dead latents
    after 150 tokens, so AuxK trains from the second step; float32 selection (bfloat16 ties would differ)."""
    specs = (DictionarySpec("topk", "x", d_sae=48, k=4),
             DictionarySpec("batchtopk", "x", d_sae=48, k=4, architecture="batchtopk"),
             DictionarySpec("matryoshka", "x", d_sae=48, k=4, architecture="matryoshka", group_sizes=(8, 16, 24)),
             DictionarySpec("transcoder", "x", d_sae=48, k=4, architecture="batchtopk", out_hookpoint="y", skip=True))
    base = dict(n_tokens=10**9, batch_size=4, shuffle_windows=16, dead_tokens=150, checkpoint_every=CHECKPOINT_EVERY,
                encoder_dtype="float32", log_every=1, heldout_windows=0, lr=5e-3)
    return TrainConfig(specs, **{**base, **kw})


def sae_run(run_dir: Path, config: TrainConfig | None = None, **kw) -> dict[str, torch.Tensor]:
    """Train `sae_config` on 64 windows (16 steps) of synthetic sparse activations; every trainer's weights."""
    data = make_sparse(n_windows=64, ctx=16, d=16, n_true=32, k_true=3, d_out=12, skip=True)
    config = config or sae_config()
    trainers, state = train(config, tensor_reader(data.acts, data.mask), {"x": "x", "y": "y"}, {"x": 16, "y": 12},
                            (0, 64), run_dir, ctx_len=16, fingerprint_extra={}, progress=False, **kw)
    out = {"step": torch.tensor(state.step), "text_tokens": torch.tensor(state.text_tokens)}
    for name, t in trainers.items():
        out.update(_weights(t.coder, name))
        out[f"{name}.tokens_since_fired"] = t.tokens_since_fired.clone()
        out[f"{name}.aux_steps"] = torch.tensor(sum(m["aux_loss"] > 0 for m in t.recent))
    return out


def paired_batches(n: int = 6000, d: int = 16):
    """[n, 2, d] paired activations: sparse shared and one-model directions, a 3x larger target, mean offsets."""
    g = torch.Generator().manual_seed(0)
    planted = torch.randn(12, 2, d, generator=g)
    planted[:4, 1] = 0  # base-only
    planted[4:8, 0] = 0  # target-only
    coef = (torch.rand(n, 12, generator=g) < 0.2) * torch.rand(n, 12, generator=g)
    x = torch.einsum("nc,csd->nsd", coef, planted) * torch.tensor([1.0, 3.0])[None, :, None] + 0.3
    return lambda: (x[i:i + 500] for i in range(0, n, 500))


CROSSCODER = CrosscoderConfig(d_sae=32, k=2, n_tokens=6000, batch_size=400, lr=1e-2, dead_tokens=800, n_shared=4,
                              checkpoint_every=5, seed=1, encoder_dtype="float32")


def crosscoder_run(out_dir: Path | None) -> dict[str, torch.Tensor]:
    coder = train_crosscoder(paired_batches(), CROSSCODER, d_in=16, hookpoint="h", out_dir=out_dir, progress=False)
    return _weights(coder, "crosscoder")


def synth_world(root: Path):
    """A tiny synthetic model saved at root/synth (every rank builds the same one from its seed)."""
    model = make_synth_model(SynthConfig(num_features=32, hidden_dim=16, bias=False, seed=3))
    path = root / "synth"
    if is_main() and not path.exists():
        model.save(path)
    barrier()  # the other ranks hash the saved weights
    return model, path


def synth_config(n_dictionaries: int = 3) -> TrainConfig:
    specs = tuple(DictionarySpec(f"s{i}", "synthetic", d_sae=24 + 8 * i, k=3, architecture=a)
                  for i, a in zip(range(n_dictionaries), ("topk", "batchtopk", "matryoshka")))
    return TrainConfig(specs, n_tokens=12 * 128, batch_size=128, shuffle_windows=128, dead_tokens=300, seed=5,
                       checkpoint_every=4, encoder_dtype="float32")


def synth_run(root: Path, parallel: str, config: TrainConfig | None = None) -> dict[str, torch.Tensor]:
    """run_synthetic end to end (locks, checkpoints, saved dictionaries); the saved weights."""
    from saelab.coders import SparseCoder

    model, path = synth_world(root)
    paths = run_synthetic(config or synth_config(), Workspace(root / f"ws-{parallel}"), model, path, progress=False,
                          heldout_samples=256, parallel=parallel)  # type: ignore[arg-type]
    out = {}
    for p in paths:
        out.update(_weights(SparseCoder.load(p), p.name))
    return out


def _refusals(root: Path) -> dict[str, str]:
    """The errors two refused runs raise on this rank: more ranks than dictionaries, and another run's checkpoint
    found by rank 0 under its lock (every rank must get it, not wait for a decision)."""
    errors = {}
    model, path = synth_world(root)
    try:
        run_synthetic(synth_config(1), Workspace(root / "ws-one"), model, path, progress=False,
                      parallel="dictionaries")
    except SaelabError as e:
        errors["too_many_ranks"] = f"{type(e).__name__}: {e}"
    try:  # the finished data-parallel run's workspace, another seed: its checkpoint is another run's
        run_synthetic(replace(synth_config(), seed=6), Workspace(root / "ws-data"), model, path, progress=False)
    except SaelabError as e:
        errors["other_run"] = f"{type(e).__name__}: {e}"
    return errors


def main() -> None:
    torch.set_num_threads(1)
    init_from_env("cpu")
    out, phase = Path(sys.argv[1]), sys.argv[2]
    results: dict[str, torch.Tensor] = {}
    if phase == "first":
        results.update(sae_run(out / "sae"))
        sae_run(out / "killed", until_step=UNTIL_STEP)
        results.update({f"buffered.{k}": v for k, v in sae_run(out / "buffered", sae_config(epochs=2.0),
                                                               buffer_dir=out / "buffer").items()})
        results.update(crosscoder_run(out / "crosscoder"))
        results.update({f"data.{k}": v for k, v in synth_run(out, "data").items()})
        results.update({f"dictionaries.{k}": v for k, v in synth_run(out, "dictionaries").items()})
        errors = _refusals(out)
        (out / f"errors.rank-{rank_and_world()[0]}.json").write_text(json.dumps(errors))
    else:
        results.update(sae_run(out / "killed", resume=True))
    if is_main():
        torch.save(results, out / f"{phase}.pt")
    barrier()  # a rank that tears its process group down while another still works aborts gloo
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
