"""Benchmark: saelab's trainer before and after the sparse step (#25) vs EleutherAI sparsify, same tokens.

    flock /tmp/saelab-cpu.lock .venv/bin/python bench/train.py [--n-tokens 199936] [--held-out-windows 32]
        [--widths 4096 16384] [--peer-full-model-tokens N] [--skip-peer] [--skip-before] [--out bench/train.json]

One run measures, side by side:

1. The whole stream: one pass over N training tokens of SmolLM2-135M `resid_post.6` (sparsify's `layers.6`)
   through the model into a TopK SAE (4,096 latents, k = 32, batches of 8 windows × 256 tokens), on the SAME
   token windows of the embedded `mixed-en` corpus (saelab's workspace windows; sparsify gets them as a
   `datasets.Dataset`). Each side runs in its own process:
   - saelab BEFORE: commit 39f228c (dense backward, unfused Adam) from a git worktree at /tmp/saelab-before
     (added here if missing), the model at `--dtype auto` (the CLI's default then and now);
   - saelab AFTER: this working tree with its defaults (sparse step, encoder_dtype auto), the model at
     `--dtype auto`, and again with the model in float32, so the model dtype's share of the gain and the
     step's stand apart;
   - sparsify 1.3.3 with its defaults, the model in float32 (as its Trainer is given it here), truncated to
     7 layers (identical activations at layer 6: equal footing), and with --peer-full-model-tokens N on the
     full 30 layers as users run it (throughput only, timed on N tokens).
   tok/s = window tokens / wall seconds of the training call alone (model forward + SAE + its final save;
   model loading excluded), on every side. saelab trains with checkpoint_every=0 and heldout_windows=0 (no
   held-out evaluation while training: the other sides do none).
   Every dictionary is then evaluated here on the same held-out windows (the ones after the training
   budget; activations from the float32 model) by one formula: FVU = Σ‖x − x̂‖² / Σ‖x − μ‖² over the text
   positions (position 0, the attention sink, and special tokens excluded; μ their mean), and over all
   positions. sparsify's SAE is read by saelab's sparsify loader and, as a check, by sparsify's own forward.

2. The dictionary step alone, over buffered activations: 16 batches of 2,048 rows (text positions of the
   training windows from the float32 model, repeated when a small --n-tokens has fewer; saved once to a
   safetensors file) fed to BEFORE's `DictionaryTrainer.step`, AFTER's with encoder_dtype float32 and auto,
   and the dense reference (`reference=True`) of this tree, for each width in --widths (k = 32), each in a
   fresh process, at a constant rate (saelab: no warm-up, so the few steps learn; sparsify has none).
   ms/step: the median of the steps after 3 warm-up steps (the first sets b_dec); tok/s = 2,048 / that.
   sparsify: its own `Trainer.fit`, unchanged, over a stand-in model whose `layers.6` emits the buffered
   batch its token ids name; a step is the time between two of fit's per-step `wandb.log` calls, so it
   holds all fit does per step (decoder renormalisation, fused encoder, decoder, backward, gradient
   projection, SignSGD + schedule-free, dead-latent counters, its logging), with a view of the batch in
   place of the model's forward.

3. Share of the ceiling: the machine's fp32 and bf16 matmul rate on a 2048×576×16384 product (best of 5
   after a warm-up, measured in this run beside the step timings). A TopK step needs 2·N·d·F FLOPs for
   the dense encoder product that selects, and ≈ 8·N·k·d for the sparse rest (decoder, its two backward
   products, the encoder's sparse backward). Achieved GFLOP/s = those FLOPs / time per step for every
   variant, whatever it really computed (the dense reference and BEFORE also backpropagate through the
   dense product), as a share of the ceiling of the selecting product's dtype. AuxK does no work in any
   of these: no latent is dead before 10M tokens (and sparsify's default is auxk_alpha = 0).

Fairness: sparsify's defaults are SignSGD + schedule-free (lr 5e-3/√(F/2¹⁴)), no AuxK, every position
trained (the sink too); saelab's are Adam (lr 2e-4/√(F/2¹⁴), warm-up, decay over the last 20%), AuxK 1/32,
b_dec = geometric median, sink and special tokens excluded. The model dtypes differ (saelab auto → bf16
where the CPU has avx512_bf16/amx; sparsify fp32): both are reported, and saelab AFTER with a float32
model is the equal-footing row. The machine is shared: the load average before and after is recorded.
Output: a markdown block for bench/RESULTS.md on stdout; the JSON at --out, rewritten after each stage.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
PYTHON, PEER_PYTHON = ROOT / ".venv" / "bin" / "python", ROOT / ".venv-peers" / "bin" / "python"
BEFORE_REV, BEFORE_TREE = "39f228c", Path("/tmp/saelab-before")
LAYER, D_SAE, K, CTX, BATCH = 6, 4096, 32, 256, 8
STEP_BATCHES, STEP_ROWS, STEP_WARMUP = 16, BATCH * CTX, 3
CEILING_SHAPE = (2048, 576, 16384)


# -- workers: each runs in its own process (`bench/train.py _worker MODE CFG`) ----------------------------------

def worker_stream(cfg: dict) -> dict:
    """saelab's whole stream, on whichever tree PYTHONPATH names (the old API is a subset of the new)."""
    import saelab
    from saelab.data.tokens import load_token_windows
    from saelab.models import load_model
    from saelab.train import DictionarySpec, TrainConfig, run
    from saelab.workspace import Workspace

    lm = load_model("smollm2-135m", dtype=cfg["dtype"])
    ws = Workspace.at(cfg["workspace"])
    windows = load_token_windows(ws.tokens)
    spec = DictionarySpec(cfg["name"], f"resid_post.{LAYER}", d_sae=D_SAE, k=K)
    config = TrainConfig((spec,), n_tokens=cfg["n_tokens"], batch_size=BATCH, checkpoint_every=0, **cfg["config"])
    t0 = time.perf_counter()
    (path,) = run(config, ws, lm, windows, run_name=spec.name, resume=False, progress=False)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "path": str(path), "model_dtype": str(lm.dtype).removeprefix("torch."),
            "tokens_hash": windows.tokens_hash, "saelab_from": str(Path(saelab.__file__).parents[1])}


def worker_step(cfg: dict) -> dict:
    """`DictionaryTrainer.step` timed on each buffered batch, on whichever tree PYTHONPATH names."""
    import saelab
    from saelab.train import DictionarySpec, DictionaryTrainer, TrainConfig, coder_config

    batches = load_file(cfg["acts"])["x"].split(STEP_ROWS)  # STEP_BATCHES × [2048, d]
    d = batches[0].shape[1]
    spec = DictionarySpec("bench-step", "x", d_sae=cfg["d_sae"], k=K)
    # a constant rate (no warm-up, no decay within 10,000 steps), so the timed steps learn; the time is the same
    config = TrainConfig((spec,), checkpoint_every=0, lr_warmup_steps=0, **cfg["config"])
    trainer = DictionaryTrainer(spec, coder_config(spec, d, d, "x", None, ""), config, total_steps=10_000,
                                **cfg["trainer"])
    seconds, fvus = [], []
    for x in batches:
        t0 = time.perf_counter()
        fvus.append(trainer.step(x, x)["fvu"])
        seconds.append(time.perf_counter() - t0)
    select = getattr(trainer, "select_dtype", torch.float32)  # BEFORE has one dtype: float32
    return {"seconds": seconds, "train_fvu": fvus, "select_dtype": str(select).removeprefix("torch."),
            "saelab_from": str(Path(saelab.__file__).parents[1])}


def _wandb_stand_in(logged: list) -> None:
    """sparsify reports its FVU only through wandb.log: record each call with its time."""
    import importlib.machinery
    import types

    wandb = types.ModuleType("wandb")
    wandb.__spec__ = importlib.machinery.ModuleSpec("wandb", None)  # accelerate probes find_spec("wandb")
    wandb.init = lambda *a, **k: None
    wandb.log = lambda info, step=None: logged.append({"step": step, "time": time.perf_counter(), **info})
    sys.modules["wandb"] = wandb


def _sparsify_fit(dataset_ids: torch.Tensor, model: torch.nn.Module, d_sae: int, save_dir: str) -> tuple[float, list]:
    """sparsify's Trainer with its defaults on `model`; (seconds of fit(), its wandb.log records)."""
    logged: list = []
    _wandb_stand_in(logged)
    from datasets import Dataset
    from sparsify import SaeConfig, TrainConfig, Trainer

    ds = Dataset.from_dict({"input_ids": dataset_ids.tolist()}).with_format("torch")
    tc = TrainConfig(SaeConfig(k=K, num_latents=d_sae), batch_size=BATCH, hookpoints=[f"layers.{LAYER}"],
                     save_dir=save_dir, run_name="run", log_to_wandb=True, save_every=10**9)
    trainer = Trainer(tc, ds, model)
    t0 = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - t0, logged


def worker_peer_train(cfg: dict) -> dict:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(cfg["model_dir"], dtype=torch.float32)
    if cfg["truncate"]:
        model.layers = model.layers[: LAYER + 1]
    tokens = load_file(cfg["tokens"])["tokens"].long()
    seconds, logged = _sparsify_fit(tokens, model, D_SAE, cfg["save_dir"])
    fvus = [r[f"fvu/layers.{LAYER}"] for r in logged]
    return {"seconds": seconds, "tokens": tokens.numel(), "train_fvu_last": fvus[-1],
            "train_fvu_last10": sum(fvus[-10:]) / len(fvus[-10:]), "sparsify_version": _sparsify_version()}


class ReplayModel(torch.nn.Module):
    """A stand-in for the model in sparsify's fit: `layers.6` emits buffered activations [8, 256, d], the batch
    whose index every token id of the step holds (no transformer runs)."""

    def __init__(self, acts: torch.Tensor):
        super().__init__()
        self.acts = acts  # [STEP_BATCHES · 2048, d]
        self.layers = torch.nn.ModuleList(torch.nn.Identity() for _ in range(LAYER + 1))

    base_model = property(lambda self: self)
    device = property(lambda self: torch.device("cpu"))
    dummy_inputs = property(lambda self: {"input_ids": torch.zeros(1, CTX, dtype=torch.long)})

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        b = int(input_ids[0, 0])
        h = self.acts[b * STEP_ROWS:(b + 1) * STEP_ROWS].view(BATCH, CTX, -1)  # [8, 256, d]
        for layer in self.layers:
            h = layer(h)
        return h


def worker_peer_step(cfg: dict) -> dict:
    acts = load_file(cfg["acts"])["x"]
    ids = torch.arange(STEP_BATCHES).repeat_interleave(BATCH)[:, None].expand(-1, CTX)  # window -> its batch
    _, logged = _sparsify_fit(ids, ReplayModel(acts), cfg["d_sae"], cfg["save_dir"])
    times = [r["time"] for r in logged]
    # step i's time: from the end of step i-1 (its wandb.log) to the end of step i; step 0 has none (warm-up)
    return {"seconds": [None] + [b - a for a, b in zip(times, times[1:])],
            "train_fvu": [r[f"fvu/layers.{LAYER}"] for r in logged], "select_dtype": "float32",
            "sparsify_version": _sparsify_version()}


def worker_peer_eval(cfg: dict) -> dict:
    from sparsify import Sae

    sae = Sae.load_from_disk(cfg["sae_dir"], device="cpu")
    with torch.no_grad():
        x_hat = sae(load_file(cfg["held_out"])["x"]).sae_out
    save_file({"x_hat": x_hat.contiguous()}, cfg["x_hat"])
    return {}


def _sparsify_version() -> str:
    from importlib.metadata import version

    return version("eai-sparsify")


WORKERS = {"stream": worker_stream, "step": worker_step, "peer_train": worker_peer_train,
           "peer_step": worker_peer_step, "peer_eval": worker_peer_eval}


def spawn(mode: str, cfg: dict, tmp: Path, tree: Path | None) -> dict:
    """Run WORKERS[mode] in a fresh process: saelab from `tree` (its src/) with the project's venv, or sparsify's
    venv when tree is None. Returns the worker's result."""
    cfg_path = tmp / f"{mode}-{time.time_ns()}.json"
    out = cfg_path.with_suffix(".out.json")
    cfg_path.write_text(json.dumps({**cfg, "out": str(out)}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    env.pop("PYTHONPATH", None)
    if tree is not None:
        env["PYTHONPATH"] = str(tree / "src")
    python = PYTHON if tree is not None else PEER_PYTHON
    r = subprocess.run([str(python), __file__, "_worker", mode, str(cfg_path)], env=env, capture_output=True,
                       text=True, cwd=tmp)
    if r.returncode:
        sys.exit(f"bench/train.py: {mode} ({'sparsify' if tree is None else tree}) failed:\n{r.stderr[-4000:]}")
    return json.loads(out.read_text())


def before_tree() -> Path:
    """The worktree of BEFORE_REV at BEFORE_TREE, added (detached) if missing."""
    if not (BEFORE_TREE / "src" / "saelab").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(BEFORE_TREE), BEFORE_REV],
                       check=True, capture_output=True)
    head = subprocess.run(["git", "-C", str(BEFORE_TREE), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    want = subprocess.run(["git", "-C", str(ROOT), "rev-parse", BEFORE_REV], capture_output=True, text=True).stdout
    if head.strip() != want.strip():
        sys.exit(f"bench/train.py: {BEFORE_TREE} is at {head.strip()[:12]}, not {BEFORE_REV}; remove it "
                 f"(git worktree remove {BEFORE_TREE}) and rerun.")
    return BEFORE_TREE


# -- measurements --------------------------------------------------------------------------------------------

def fvu(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Σ‖x − x̂‖² / Σ‖x − μ‖² over the rows given. x, x_hat [N, d]."""
    x, x_hat = x.double(), x_hat.double()
    return float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def evaluate(path: str, x: torch.Tensor, mask: torch.Tensor) -> dict:
    """Held-out FVU (text positions, all positions) and L0 of the dictionary at `path`. x [n, d], mask bool [n]."""
    from saelab.coders import load_dictionary

    with torch.no_grad():
        out = load_dictionary(path)(x)
    l0 = (out.latents[mask] > 0).sum(-1).float().mean()
    return {"fvu_text": fvu(x[mask], out.x_hat[mask]), "fvu_all_positions": fvu(x, out.x_hat), "l0": float(l0)}


def activations(lm, windows, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations [n, d] float32 at every position of windows [lo, hi), and the text mask bool [n]."""
    from saelab.activations import StreamConfig, stream_activations

    acts, masks = [], []
    for b in stream_activations(lm, windows, [f"resid_post.{LAYER}"], StreamConfig(BATCH, lo, hi), progress=False):
        acts.append(b.acts[f"model.layers.{LAYER}"].flatten(0, 1).float())
        masks.append(b.mask.flatten())
    return torch.cat(acts), torch.cat(masks)


def step_rows(lm, windows, n_train: int) -> tuple[torch.Tensor, bool]:
    """STEP_BATCHES · STEP_ROWS text-position activations from the first training windows ([rows, d]), and
    whether they had to be repeated to fill them (a small --n-tokens)."""
    need = STEP_BATCHES * STEP_ROWS
    x, mask = activations(lm, windows, 0, min(n_train, need // (CTX - 8) + 1))
    x = x[mask]
    repeated = x.shape[0] < need
    return x.repeat(need // x.shape[0] + 1, 1)[:need].contiguous(), repeated


def ceiling(reps: int = 5) -> dict:
    """GFLOP/s of one 2048×576×16384 product in float32 and bfloat16: best and median of `reps` after a warm-up."""
    m, d, f = CEILING_SHAPE
    a, w = torch.randn(m, d), torch.randn(d, f)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, y = a.to(dtype), w.to(dtype)
        x @ y
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            x @ y
            times.append(time.perf_counter() - t0)
        gflop = 2 * m * d * f / 1e9
        out[str(dtype).removeprefix("torch.")] = {"best_gflops": gflop / min(times),
                                                  "median_gflops": gflop / statistics.median(times)}
    return out


def step_flops(d_sae: int, d: int = 576, n: int = STEP_ROWS) -> int:
    """FLOPs a sparse TopK step needs: the dense selecting product 2·N·d·F, and ≈ 8·N·k·d for the rest."""
    return 2 * n * d * d_sae + 8 * n * K * d


STEP_VARIANTS = {  # name: (tree: "before" / "after" / None = sparsify, TrainConfig fields, DictionaryTrainer kwargs)
    "before": ("before", {}, {}),
    "after_float32": ("after", {"encoder_dtype": "float32"}, {}),
    "after_auto": ("after", {"encoder_dtype": "auto"}, {}),
    "reference": ("after", {"encoder_dtype": "float32"}, {"reference": True}),
    "sparsify": (None, {}, {}),
}


def bench_steps(widths: list[int], variants: list[str], acts_file: Path, tmp: Path, ceil: dict) -> dict:
    """{width: {variant: its step timings, tok/s, GFLOP/s and share of the `ceil` of its selecting dtype}}."""
    trees = {"before": BEFORE_TREE, "after": ROOT}
    out: dict = {}
    for width in widths:
        out[str(width)] = row = {}
        for name in variants:
            tree, config, trainer = STEP_VARIANTS[name]
            cfg = {"acts": str(acts_file), "d_sae": width, "config": config, "trainer": trainer,
                   "save_dir": str(tmp / f"sparsify-step-{width}")}
            r = spawn("peer_step" if tree is None else "step", cfg, tmp, trees.get(tree))
            seconds = statistics.median(r["seconds"][STEP_WARMUP:])
            gflops = step_flops(width) / seconds / 1e9
            row[name] = {**r, "ms_per_step": seconds * 1e3, "tokens_per_s": STEP_ROWS / seconds, "gflops": gflops,
                         "share_of_ceiling": gflops / ceil[r["select_dtype"]]["best_gflops"]}
            print(f"step {width} {name}: {seconds * 1e3:.0f} ms", file=sys.stderr, flush=True)
    return out


def bench_stream(args, res: dict, windows, model_dir: str, x: torch.Tensor, mask: torch.Tensor, tmp: Path) -> None:
    """The whole-stream runs, each written into res["stream"] (and to --out) as soon as it is evaluated."""
    ws, n_train = tmp / "ws", args.n_tokens // CTX
    runs = [("saelab_before", BEFORE_TREE, "auto", {})] if not args.skip_before else []
    runs += [("saelab_after", ROOT, "auto", {"heldout_windows": 0}),
             ("saelab_after_model_float32", ROOT, "float32", {"heldout_windows": 0})]
    for key, tree, dtype, config in runs:
        r = spawn("stream", {"dtype": dtype, "workspace": str(ws), "name": f"bench-{key}", "n_tokens": n_train * CTX,
                             "config": config}, tmp, tree)
        if r["tokens_hash"] != res["tokens"]["tokens_hash"]:
            sys.exit(f"bench/train.py: {key} read other token windows ({r['tokens_hash']})")
        res["stream"][key] = {**r, "tokens": n_train * CTX, "tokens_per_s": n_train * CTX / r["seconds"],
                              "layers_run": LAYER + 1, "eval": evaluate(r["path"], x, mask)}
        report(res, args.out)
    if args.skip_peer:
        return
    res["stream"]["sparsify_7_layers"] = peer_stream(windows, model_dir, n_train, True, tmp)
    res["stream"]["sparsify_7_layers"]["eval"] = eval_sparsify(res["stream"]["sparsify_7_layers"]["sae_dir"], x,
                                                               mask, tmp)
    report(res, args.out)
    if args.peer_full_model_tokens:  # throughput only: the activations, hence the SAE, are the same
        res["stream"]["sparsify_full_model"] = peer_stream(windows, model_dir, args.peer_full_model_tokens // CTX,
                                                              False, tmp)
        report(res, args.out)


def peer_stream(windows, model_dir: str, n_windows: int, truncate: bool, tmp: Path) -> dict:
    """sparsify's Trainer with its defaults on the first `n_windows` windows (model truncated to 7 layers or not)."""
    tokens_file = tmp / f"train_tokens_{n_windows}.safetensors"
    save_file({"tokens": windows.tokens[:n_windows].contiguous()}, str(tokens_file))
    save_dir = tmp / f"sparsify-{'7-layers' if truncate else 'full'}"
    r = spawn("peer_train", {"tokens": str(tokens_file), "model_dir": model_dir, "truncate": truncate,
                             "save_dir": str(save_dir)}, tmp, None)
    return {**r, "tokens_per_s": r["tokens"] / r["seconds"], "model_dtype": "float32",
            "layers_run": LAYER + 1 if truncate else 30, "sae_dir": str(save_dir / "run" / f"layers.{LAYER}")}


def eval_sparsify(sae_dir: str, x: torch.Tensor, mask: torch.Tensor, tmp: Path) -> dict:
    """The sparsify SAE through saelab's loader, checked against sparsify's own forward."""
    result = evaluate(sae_dir, x, mask)
    held, x_hat = tmp / "held_out.safetensors", tmp / "x_hat.safetensors"
    save_file({"x": x.contiguous()}, str(held))
    spawn("peer_eval", {"sae_dir": sae_dir, "held_out": str(held), "x_hat": str(x_hat)}, tmp, None)
    result["fvu_text_by_sparsify_forward"] = fvu(x[mask], load_file(str(x_hat))["x_hat"][mask])
    return result


def machine() -> dict:
    import psutil

    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    field = {ln.split(":", 1)[0].strip(): ln.split(":", 1)[1].strip() for ln in text.splitlines() if ":" in ln}
    flags = set(field.get("flags", "").split())
    return {"cpu": field.get("model name", platform.processor() or platform.machine()),
            "bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"}), "cores": os.cpu_count(),
            "ram_gb": round(psutil.virtual_memory().total / 2**30), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "load_avg_start": os.getloadavg()[0]}


def provenance() -> dict:
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout.strip()

    return {"after_head": git("rev-parse", "--short", "HEAD"),
            "after_src_uncommitted": git("status", "--porcelain", "src").splitlines(),
            "before_rev": BEFORE_REV, "before_tree": str(BEFORE_TREE)}


# -- the run ---------------------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-tokens", type=int, default=199_936, help="training tokens of the whole stream (a multiple "
                   "of 256; default 199,936 = 781 windows)")
    p.add_argument("--held-out-windows", type=int, default=32, help="windows after the training ones, for the "
                   "held-out FVU (default 32)")
    p.add_argument("--widths", type=int, nargs="+", default=[4096, 16384], help="latents of the step benchmark "
                   "(default 4096 16384)")
    p.add_argument("--peer-full-model-tokens", type=int, default=0, help="also time sparsify on the full 30-layer "
                   "model (as users run it) on this many tokens (default 0: not)")
    p.add_argument("--skip-peer", action="store_true", help="no sparsify runs")
    p.add_argument("--skip-before", action="store_true", help=f"no saelab BEFORE ({BEFORE_REV}) runs")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "train.json", help="the JSON (default "
                   "bench/train.json)")
    return p.parse_args()


def main() -> None:
    if sys.argv[1:2] == ["_worker"]:
        cfg = json.loads(Path(sys.argv[3]).read_text())
        Path(cfg["out"]).write_text(json.dumps(WORKERS[sys.argv[2]](cfg)))
        return
    args = parse_args()
    from saelab.data.run import TokensConfig
    from saelab.data.run import run as tokens_run
    from saelab.models import load_model
    from saelab.workspace import Workspace

    if not args.skip_before:
        before_tree()
    tmp = Path(tempfile.mkdtemp(prefix="saelab-bench-train-"))
    n_train = args.n_tokens // CTX
    n_windows = n_train + args.held_out_windows
    lm = load_model("smollm2-135m", dtype="float32")  # held-out and step activations: the float32 model's
    windows = tokens_run(TokensConfig(corpus="mixed-en", ctx_len=CTX, n_tokens=n_windows * CTX),
                         Workspace.at(tmp / "ws"), lm)
    x, mask = activations(lm, windows, n_train, n_windows)
    rows, repeated = step_rows(lm, windows, n_train)
    model_dir = lm.path
    del lm
    gc.collect()
    acts_file = tmp / "step_acts.safetensors"
    save_file({"x": rows}, str(acts_file))
    res: dict = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "command": sys.argv[1:],
                 "machine": machine(), "provenance": provenance(), "work_dir": str(tmp),
                 "tokens": {"corpus": "mixed-en", "train_windows": n_train, "train_tokens": n_train * CTX,
                            "held_out_windows": args.held_out_windows, "held_out_text_positions": int(mask.sum()),
                            "held_out_positions": int(mask.numel()), "tokens_hash": windows.tokens_hash},
                 "step_setup": {"batches": STEP_BATCHES, "rows": STEP_ROWS, "warmup": STEP_WARMUP,
                                "rows_repeated": repeated, "k": K},
                 "stream": {}, "step": {}}
    variants = [v for v in STEP_VARIANTS if not (args.skip_before and v == "before")
                and not (args.skip_peer and v == "sparsify")]
    res["ceiling"] = ceiling()
    res["step"] = bench_steps(args.widths, variants, acts_file, tmp, res["ceiling"])
    report(res, args.out)
    bench_stream(args, res, windows, model_dir, x, mask, tmp)
    res["machine"]["load_avg_end"] = os.getloadavg()[0]
    report(res, args.out)
    print(markdown(res))


def report(res: dict, out: Path) -> None:
    out.write_text(json.dumps(res, indent=2) + "\n")


STREAM_LABELS = {"saelab_before": f"saelab BEFORE ({BEFORE_REV}), defaults",
                 "saelab_after": "saelab AFTER, defaults",
                 "saelab_after_model_float32": "saelab AFTER, defaults, model float32",
                 "sparsify_7_layers": "sparsify (defaults), model truncated to 7 layers",
                 "sparsify_full_model": "sparsify (defaults), full model"}
STEP_LABELS = {"before": f"saelab BEFORE ({BEFORE_REV})", "after_float32": "saelab AFTER, encoder_dtype float32",
               "after_auto": "saelab AFTER, encoder_dtype auto", "reference": "saelab dense reference (reference=True)",
               "sparsify": "sparsify fit (defaults)"}


def markdown(res: dict) -> str:
    m, t, p = res["machine"], res["tokens"], res["provenance"]
    dirty = f" + {len(p['after_src_uncommitted'])} uncommitted src/ changes" if p["after_src_uncommitted"] else ""
    lines = [f"Measured {res['date']} by `flock /tmp/saelab-cpu.lock .venv/bin/python bench/train.py "
             f"{' '.join(res['command'])}` on {m['cpu']} ({', '.join(m['bf16_flags']) or 'no avx512_bf16/amx'}), "
             f"{m['cores']} cores, {m['ram_gb']} GB RAM, torch {m['torch']}, {m['threads']} threads; load average "
             f"{m['load_avg_start']:.2f} before, {m.get('load_avg_end', float('nan')):.2f} after. Tokens: "
             f"{t['train_windows']:,} windows × {CTX} = {t['train_tokens']:,} training tokens of `{t['corpus']}` "
             f"(tokens hash `{t['tokens_hash']}`); held out: the next {t['held_out_windows']} windows "
             f"({t['held_out_text_positions']:,} text positions, {t['held_out_positions']:,} with position 0 and "
             f"special tokens). AFTER = {p['after_head']}{dirty}; BEFORE = {p['before_rev']}.", ""]
    lines += stream_table(res) + [""] + step_table(res)
    return "\n".join(lines)


def stream_table(res: dict) -> list[str]:
    s = res["stream"]
    base = s.get("sparsify_7_layers", {}).get("tokens_per_s")
    lines = [f"Whole stream: SmolLM2-135M `resid_post.{LAYER}`, TopK {D_SAE:,} latents, k = {K}, {BATCH} × {CTX} "
             "tokens per step, one pass.", "",
             "| trainer | model dtype | layers run | tok/s | × sparsify (7 layers) | held-out FVU, text | "
             "held-out FVU, all positions | L0 |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, r in s.items():
        e = r.get("eval")
        ratio = f"{r['tokens_per_s'] / base:.2f}×" if base else "—"
        evals = f"{e['fvu_text']:.4f} | {e['fvu_all_positions']:.4f} | {e['l0']:.1f}" if e else "— | — | —"
        lines.append(f"| {STREAM_LABELS[key]} | {r['model_dtype']} | {r['layers_run']} | {r['tokens_per_s']:,.0f} | "
                     f"{ratio} | {evals} |")
    if "sparsify_7_layers" in s:
        e = s["sparsify_7_layers"]["eval"]
        lines += ["", f"sparsify's SAE through its own forward: held-out FVU {e['fvu_text_by_sparsify_forward']:.4f} "
                  f"on the text positions (saelab's loader: {e['fvu_text']:.4f})."]
    return lines


def step_table(res: dict) -> list[str]:
    c, st = res["ceiling"], res["step_setup"]
    n_timed = STEP_BATCHES - STEP_WARMUP
    lines = [f"Dictionary step alone: {st['batches']} buffered batches of {st['rows']:,} rows (k = {K})"
             + (", rows repeated to fill them" if st["rows_repeated"] else "")
             + f"; median of {n_timed} steps after {STEP_WARMUP} warm-up.", "",
             "| latents | step | selecting product | ms/step | tok/s | × BEFORE | GFLOP/s | share of ceiling |",
             "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for width, row in res["step"].items():
        before = row.get("before", {}).get("ms_per_step")
        for name, r in row.items():
            ratio = f"{before / r['ms_per_step']:.2f}×" if before else "—"
            lines.append(f"| {int(width):,} | {STEP_LABELS[name]} | {r['select_dtype']} | {r['ms_per_step']:,.0f} | "
                         f"{r['tokens_per_s']:,.0f} | {ratio} | {r['gflops']:.0f} | {r['share_of_ceiling']:.0%} |")
    flops = ", ".join(f"{step_flops(int(w)) / 1e9:.1f} GFLOP at {int(w):,}" for w in res["step"])
    lines += ["", f"Ceiling ({'×'.join(map(str, CEILING_SHAPE))} product, best of 5): float32 "
              f"{c['float32']['best_gflops']:.0f} GFLOP/s (median {c['float32']['median_gflops']:.0f}), bfloat16 "
              f"{c['bfloat16']['best_gflops']:.0f} GFLOP/s (median {c['bfloat16']['median_gflops']:.0f}). FLOPs "
              f"counted per step: 2·N·d·F + 8·N·k·d ({flops})."]
    return lines


if __name__ == "__main__":
    main()
