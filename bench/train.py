"""Benchmark: saelab's TopK SAE trainer vs EleutherAI sparsify, same tokens, same held-out FVU.

    flock /tmp/saelab-cpu.lock .venv/bin/python bench/train.py [--n-tokens 199936] [--peer-full-model-tokens 51200]

Both train a 4,096-latent k=32 TopK SAE on SmolLM2-135M `resid_post.6` (sparsify's
`layers.6`), fp32, batches of 8 windows of 256 tokens, on the SAME token windows of the
embedded corpus (saelab's workspace windows, handed to sparsify as a `datasets.Dataset`).
sparsify runs in the peer venv (`.venv-peers`) as a subprocess, with its defaults
(1.3.3: SignSGD + schedule-free, no AuxK) and a `wandb` stand-in that records its FVU.

Both dictionaries are then evaluated here on the same held-out windows (the ones after the
training budget) by one formula: FVU = Σ‖x − x̂‖² / Σ‖x − μ‖² over text positions
(position 0, the attention sink, and special tokens excluded; μ = their mean), and also
over all positions. The sparsify SAE is read by saelab's sparsify loader and, as a check,
evaluated by sparsify's own forward in the peer venv on the same saved activations.

Fairness: saelab's forward stops after layer 6; sparsify runs the model it is given, so it
is run on the model truncated to 7 layers (identical activations), and with
--peer-full-model-tokens N also on the full 30 layers, as users run it (timed on N tokens). tok/s = window tokens / wall
seconds of the whole training call (model forward + SAE), on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
LAYER, D_SAE, K, CTX, BATCH = 6, 4096, 32, 256, 8

PEER_SCRIPT = r'''
import importlib.machinery, json, os, sys, time, types
os.environ["HF_HUB_OFFLINE"] = "1"
cfg = json.load(open(sys.argv[1]))
import torch
from safetensors.torch import load_file, save_file

def train():
    logged = []
    wandb = types.ModuleType("wandb")  # stand-in: sparsify reports its FVU only through wandb.log
    wandb.__spec__ = importlib.machinery.ModuleSpec("wandb", None)  # accelerate probes find_spec("wandb")
    wandb.init = lambda *a, **k: None
    wandb.log = lambda info, step=None: logged.append({"step": step, **info})
    sys.modules["wandb"] = wandb
    from datasets import Dataset
    from transformers import AutoModel
    from sparsify import SaeConfig, TrainConfig, Trainer
    tokens = load_file(cfg["tokens"])["tokens"].long()
    ds = Dataset.from_dict({"input_ids": tokens.tolist()}).with_format("torch")
    model = AutoModel.from_pretrained(cfg["model_dir"], dtype=torch.float32)
    if cfg["truncate"]:
        model.layers = model.layers[: cfg["layer"] + 1]
    tc = TrainConfig(SaeConfig(k=cfg["k"], num_latents=cfg["d_sae"]), batch_size=cfg["batch"],
                     hookpoints=[f"layers.{cfg['layer']}"], save_dir=cfg["save_dir"], run_name="run",
                     log_to_wandb=True, save_every=10**9)
    trainer = Trainer(tc, ds, model)
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    json.dump({"seconds": seconds, "tokens": tokens.numel(), "log": logged,
               "sparsify_version": __import__("sparsify").__version__}, open(cfg["out"], "w"))

def evaluate():
    from sparsify import Sae
    sae = Sae.load_from_disk(cfg["sae_dir"], device="cpu")
    x = load_file(cfg["held_out"])["x"]
    with torch.no_grad():
        x_hat = sae(x).sae_out
    save_file({"x_hat": x_hat.contiguous()}, cfg["out"])

train() if cfg["mode"] == "train" else evaluate()
'''


def fvu(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Σ‖x − x̂‖² / Σ‖x − μ‖² over the rows given. x, x_hat [N, d]."""
    x, x_hat = x.double(), x_hat.double()
    return float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def run_peer(cfg: dict, tmp: Path) -> None:
    cfg_path = tmp / f"peer-{cfg['mode']}-{time.time_ns()}.json"
    cfg_path.write_text(json.dumps(cfg))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    r = subprocess.run([str(PEER_PYTHON), "-c", PEER_SCRIPT, str(cfg_path)], env=env, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"sparsify ({cfg['mode']}) failed:\n{r.stderr[-4000:]}")


def train_sparsify(lm, windows, n_train: int, truncate: bool, tmp: Path) -> dict:
    tokens_file = tmp / "train_tokens.safetensors"
    save_file({"tokens": windows.tokens[:n_train].contiguous()}, str(tokens_file))
    save_dir, out = tmp / f"sparsify-{'trunc' if truncate else 'full'}", tmp / f"sparsify-{truncate}.json"
    run_peer({"mode": "train", "tokens": str(tokens_file), "model_dir": lm.path, "truncate": truncate,
              "layer": LAYER, "k": K, "d_sae": D_SAE, "batch": BATCH, "save_dir": str(save_dir), "out": str(out)}, tmp)
    result = json.loads(out.read_text())
    result["sae_dir"] = str(save_dir / "run" / f"layers.{LAYER}")
    result["tokens_per_s"] = result["tokens"] / result["seconds"]
    fvus = [r[f"fvu/layers.{LAYER}"] for r in result.pop("log")]
    result["train_fvu_last"], result["train_fvu_last10"] = fvus[-1], sum(fvus[-10:]) / len(fvus[-10:])
    return result


def train_saelab(lm, windows, n_train: int, ws, lrs: tuple[float | None, ...] = (None,)) -> dict:
    """Train one dictionary per rate in `lrs` (None: the default rate) from one activation stream."""
    from saelab.train import DictionarySpec, TrainConfig, run

    specs = tuple(DictionarySpec(f"bench-saelab-topk-lr{lr or 'default'}", f"resid_post.{LAYER}", d_sae=D_SAE, k=K,
                                 lr=lr) for lr in lrs)
    config = TrainConfig(specs, n_tokens=n_train * CTX, batch_size=BATCH, checkpoint_every=0, log_every=1)
    t0 = time.perf_counter()
    paths = run(config, ws, lm, windows, run_name=specs[0].name, progress=False)
    seconds = time.perf_counter() - t0
    out = {"seconds": seconds, "tokens": n_train * CTX, "tokens_per_s": n_train * CTX / seconds,
           "n_dictionaries_in_stream": len(specs), "dictionaries": {}}
    for spec, path in zip(specs, paths):
        metrics = json.loads((path / "cfg.json").read_text())["extra"]["training"]["final"]
        out["dictionaries"][spec.name] = {"path": str(path), "lr": config.lr_for(spec),
                                          "train_fvu_last10": metrics["fvu"]}
    return out


def held_out_acts(lm, windows, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations [n, d] at every position of windows [lo, hi), and the text mask [n]."""
    from saelab.activations import StreamConfig, stream_activations

    acts, masks = [], []
    for b in stream_activations(lm, windows, [f"resid_post.{LAYER}"], StreamConfig(BATCH, lo, hi), progress=False):
        acts.append(b.acts[f"model.layers.{LAYER}"].flatten(0, 1).float())
        masks.append(b.mask.flatten())
    return torch.cat(acts), torch.cat(masks)


def evaluate(coder, x: torch.Tensor, mask: torch.Tensor) -> dict:
    with torch.no_grad():
        out = coder(x)
    l0 = (out.latents[mask] > 0).sum(-1).float().mean()
    return {"fvu_text": fvu(x[mask], out.x_hat[mask]), "fvu_all_positions": fvu(x, out.x_hat), "l0": float(l0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-tokens", type=int, default=199_936, help="training tokens (multiple of 256)")
    p.add_argument("--held-out-windows", type=int, default=32)
    p.add_argument("--peer-full-model-tokens", type=int, default=0,
                   help="also time sparsify on the full 30-layer model (as users run it) on this many tokens")
    p.add_argument("--lr-sweep", type=float, nargs="*", default=[],
                   help="also train saelab SAEs at these Adam rates (one stream for all of them)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args()
    from saelab.data.run import TokensConfig
    from saelab.data.run import run as tokens_run
    from saelab.models import load_model
    from saelab.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="saelab-bench-train-"))
    n_train = args.n_tokens // CTX
    n_windows = n_train + args.held_out_windows
    lm = load_model("smollm2-135m", dtype="float32")
    ws = Workspace.at(tmp / "ws")
    windows = tokens_run(TokensConfig(corpus="mixed-en", ctx_len=CTX, n_tokens=n_windows * CTX), ws, lm)
    x, mask = held_out_acts(lm, windows, n_train, n_windows)
    res: dict = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
                 "dtype": "float32", "train_windows": n_train, "train_tokens": n_train * CTX,
                 "held_out_windows": args.held_out_windows, "held_out_text_positions": int(mask.sum()),
                 "held_out_positions": int(mask.numel()), "tokens_hash": windows.tokens_hash}
    # essential comparison first; each stage's results are written as soon as they exist
    res["saelab"] = train_saelab(lm, windows, n_train, ws)  # defaults, alone: the timed comparison
    evaluate_all(res, "saelab", x, mask)
    res["sparsify_truncated"] = train_sparsify(lm, windows, n_train, True, tmp)
    res["sparsify_truncated"]["eval"] = eval_sparsify(res["sparsify_truncated"]["sae_dir"], x, mask, tmp)
    report(res, args.out)
    if args.lr_sweep:  # other rates, trained together from one stream
        res["saelab_lr_sweep"] = train_saelab(lm, windows, n_train, ws, tuple(args.lr_sweep))
        evaluate_all(res, "saelab_lr_sweep", x, mask)
        report(res, args.out)
    if args.peer_full_model_tokens:  # throughput only: the activations, hence the SAE, are the same
        res["sparsify_full_model"] = train_sparsify(lm, windows, args.peer_full_model_tokens // CTX, False, tmp)
        report(res, args.out)


def evaluate_all(res: dict, key: str, x: torch.Tensor, mask: torch.Tensor) -> None:
    from saelab.coders import load_dictionary

    for d in res[key]["dictionaries"].values():
        d["eval"] = evaluate(load_dictionary(d["path"]), x, mask)


def report(res: dict, out: Path | None) -> None:
    print(json.dumps(res, indent=2), flush=True)
    if out:
        out.write_text(json.dumps(res, indent=2) + "\n")


def eval_sparsify(sae_dir: str, x: torch.Tensor, mask: torch.Tensor, tmp: Path) -> dict:
    """Evaluate the sparsify SAE through saelab's loader, and check it against sparsify's own forward."""
    from safetensors.torch import load_file

    from saelab.coders import load_dictionary

    result = evaluate(load_dictionary(sae_dir), x, mask)
    save_file({"x": x.contiguous()}, str(tmp / "held_out.safetensors"))
    run_peer({"mode": "eval", "sae_dir": sae_dir, "held_out": str(tmp / "held_out.safetensors"),
              "out": str(tmp / "x_hat.safetensors")}, tmp)
    x_hat = load_file(str(tmp / "x_hat.safetensors"))["x_hat"]
    result["fvu_text_by_sparsify_forward"] = fvu(x[mask], x_hat[mask])
    return result


def machine() -> str:
    import psutil

    return (f"{platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GB RAM, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
