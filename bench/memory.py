"""Peak memory (RSS) of every stage of `saelab demo`, at N and 2N tokens, and of auto-interpretation with the
embedded 1.5B explainer at several latent counts.

Each stage runs in its own process (this file with `--child`), calling the demo's own stage function
(`saelab.demo.stage_*`, `run_demo_diff`) with the demo's settings, only its token counts scaled down; its peak RSS
is read from outside with `os.wait4` (the child's own peak, and its children's). The streaming stages (train,
cache, evals, co-occurrence, the diff's paired activations and crosscoder) must not grow with tokens: the table
gives the peak at N and 2N and their ratio. The diff names its latents with the embedded explainer when it is
installed, so `diff (no naming)` runs the same diff without that stage: its streaming part alone. The explainer
rows: converting its GGUF (the first load, once), its bf16 copy (once, where it is loaded as bf16), and auto-interp
runs of L latents with interp's default explainer and scorers on few examples, against its weights + 2 GB.
`--whole-demo` adds `saelab demo` itself, every stage in one process, at N.

    .venv/bin/python bench/memory.py [--tokens 16384] [--diff-tokens 32768] [--latents 2 8]
                                     [--dir /tmp/saelab-bench-memory] [--out bench/memory.json]
                                     [--only tokens train ...] [--n-only] [--whole-demo]

Set SAELAB_CACHE to measure the explainer's conversion in a fresh cache (its rows say 0 s when the cache already
held it). `before` in the JSON: the same steps measured with the code before the memory fixes (f5e4be2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from activations import cpu_name  # bench/activations.py, as bench/diff.py does

ROOT = Path(__file__).resolve().parents[1]
GB = 1e9
HEADROOM = 2 * GB
"""An auto-interp run may take the explainer's weights plus this much."""
STREAMING = ("train", "cache", "evals", "cooc + sfal", "diff", "diff (no naming)")
"""Stages whose peak must not grow with tokens."""


# -- children: each stage in its own process ----------------------------------------------------------------
def demo_config(n_tokens: int):
    """The demo's settings with its token counts scaled to `n_tokens` training tokens (and as many held out: the PCA
    reference of the evals stage reads 16,384 of them)."""
    from saelab.demo import DemoConfig

    return DemoConfig(train_tokens=n_tokens, eval_tokens=n_tokens, ce_tokens=2048)


def diff_config(n_tokens: int):
    """The demo's diff with `n_tokens` corpus tokens (its crosscoder's training tokens scaled alike)."""
    from saelab.demo import DEMO_DIFF

    return replace(DEMO_DIFF, n_tokens=n_tokens,
                   crosscoder=replace(DEMO_DIFF.crosscoder, n_tokens=16 * n_tokens))  # the demo's 16 passes


def explainer_config(n_latents: int):
    """interp's default run (default explainer, scorers detection, fuzz, embedding; the embedded Qwen explainer)
    on few examples, so that a CPU gets through it: every scorer runs, on 5 + 5 examples per latent."""
    from saelab.interp import ExampleConfig, InterpConfig

    return InterpConfig(examples=ExampleConfig(n_examples_train=10, n_examples_test=5, n_non_activating=5,
                                               min_examples=20), max_latents=n_latents)


def child(stage: str, ws_dir: Path, n_tokens: int) -> dict:
    from saelab import demo
    from saelab.data.tokens import load_token_windows
    from saelab.workspace import Workspace

    cfg, ws, lines = demo_config(n_tokens), Workspace(ws_dir), []
    emit = lines.append
    if stage.startswith("explainer"):
        return explainer_child(stage, ws, n_tokens)
    if stage == "finetune":  # the demo's fine-tune (once; the diff reuses its target)
        from saelab.finetune import DEMO_FINETUNE as p
        from saelab.finetune import finetune, load_slice

        finetune(p.model, load_slice(p.slice, seed=p.seed), ws.root / "diff" / "target", steps=p.steps, lr=p.lr,
                 batch_size=p.batch_size, ctx_len=p.ctx_len, seed=p.seed, layers_trainable=p.layers_trainable,
                 precision=p.precision, progress=False)
        return {"lines": lines}
    if stage == "diff":
        demo.run_demo_diff(ws.root, emit, config=diff_config(n_tokens))
        return {"lines": lines}
    if stage == "diff (no naming)":  # the streaming part alone: paired activations, sweep, crosscoder, features
        from saelab.diff import run_feature_interpretation_pipeline
        from saelab.finetune import DEMO_FINETUNE as p
        from saelab.finetune import load_slice

        cats = demo.demo_categories(load_slice(p.slice, seed=p.seed).heldout, p.slice,
                                    ws.root / "diff" / "categories.json")
        run_feature_interpretation_pipeline(p.model, str(ws.root / "diff" / "target"), ws.root / "diff" / "no-naming",
                                            layers=[demo.DEMO_LAYER], quantization="auto", emit=emit, progress=False,
                                            config=replace(diff_config(n_tokens), categories=str(cats)),
                                            skip=("naming",))
        return {"lines": lines}
    if stage == "demo (one process)":  # `saelab demo` as it runs: every stage in one process, the demo's diff
        return {"seconds_per_stage": demo.run_demo(cfg, ws, emit), "lines": lines}
    if stage in ("match", "autointerp", "autointerp (top tokens)"):
        fn = {"match": demo.stage_match, "autointerp": demo.stage_interp,
              "autointerp (top tokens)": demo.stage_interp_top_tokens}[stage]
        fn(cfg, ws, emit)
        return {"lines": lines}
    from saelab.models.load import load_model

    lm = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    if stage == "tokens":
        demo.stage_tokens(cfg, ws, lm, emit)
    elif stage == "report":
        demo.stage_report(ws, lm, emit)
    else:
        windows = load_token_windows(ws.tokens)
        fn = {"activations": demo.stage_activations, "train": demo.stage_train, "cache": demo.stage_cache,
              "evals": demo.stage_evals, "cooc + sfal": demo.stage_cooc_sfal}[stage]
        fn(cfg, ws, lm, windows, emit)
    return {"lines": lines}


def explainer_child(stage: str, ws, n_tokens: int) -> dict:
    """`explainer convert`: the GGUF → safetensors conversion (a first load); `explainer copy`: its bf16 copy;
    `explainer L`: auto-interp of L latents of the workspace's `full` SAE."""
    from saelab.interp.explainer_model import EMBEDDED_EXPLAINER, GGUF_NAME, assemble_gguf
    from saelab.models.embedded import cache_dir
    from saelab.models.load import parse_dtype, resolve_model_path

    gguf = assemble_gguf(cache_dir() / "gguf" / GGUF_NAME)
    t0 = time.perf_counter()
    path, _ = resolve_model_path(str(gguf))  # converts when the cache has no copy
    if stage == "explainer convert":
        return {"seconds": time.perf_counter() - t0, "path": path}
    from saelab.models.load import weights_dir

    weights = Path(weights_dir(path, parse_dtype("auto")))
    size = sum(f.stat().st_size for f in weights.glob("*.safetensors"))
    if stage == "explainer copy":
        return {"seconds": time.perf_counter() - t0, "weights": str(weights), "weights_bytes": size}
    from saelab.interp.run import run

    n_latents = int(stage.split()[-1])
    out = run(explainer_config(n_latents), ws, "full", name=f"memory-qwen-{n_latents}", overwrite=("all",))
    summary = json.loads((out / "summary.json").read_text())
    return {"seconds": time.perf_counter() - t0, "weights_bytes": size, "explainer": EMBEDDED_EXPLAINER,
            "n_latents": summary["n_latents"], "scorers": list(summary["scores"])}


# -- the driver ---------------------------------------------------------------------------------------------
def spawn(stage: str, ws_dir: Path, n_tokens: int) -> dict:
    """Run one stage as a child; its result, wall seconds and peak RSS (bytes, from `wait4`)."""
    result = ws_dir / f".memory-{stage.replace(' ', '_')}.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", stage, "--dir", str(ws_dir),
                             "--tokens", str(n_tokens), "--out", str(result)], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        return {"stage": stage, "n_tokens": n_tokens, "failed": True, "seconds": seconds,
                "peak_rss": usage.ru_maxrss * 1024}
    return {"stage": stage, "n_tokens": n_tokens, "seconds": seconds, "peak_rss": usage.ru_maxrss * 1024,
            **json.loads(result.read_text())}


DEMO_STAGES = ("tokens", "activations", "train", "cache", "evals", "match", "cooc + sfal", "autointerp",
               "autointerp (top tokens)", "finetune", "diff", "diff (no naming)", "report")


def measure(a: argparse.Namespace) -> list[dict]:
    """The demo's stages at N, the explainer rows (on the N workspace's `full` SAE), the demo's stages at 2N."""
    rows = []

    def one(stage: str, ws: Path, n: int) -> None:
        if a.only and stage not in a.only:
            return
        rows.append(spawn(stage, ws, n))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "lines"}), flush=True)

    first = Path(a.dir) / f"ws-{a.tokens}"
    sizes = ((a.tokens, a.diff_tokens), (2 * a.tokens, 2 * a.diff_tokens))
    for n, diff_n in sizes[:1] if a.n_only else sizes:
        ws = Path(a.dir) / f"ws-{n}"
        ws.mkdir(parents=True, exist_ok=True)
        for stage in DEMO_STAGES:
            if stage == "finetune" and ws != first:
                target = first / "diff" / "target"  # the fine-tuned target is made once
                if target.exists() and not (ws / "diff" / "target").exists():
                    shutil.copytree(target, ws / "diff" / "target")
                continue
            one(stage, ws, diff_n if stage.startswith("diff") else n)
        if ws == first:
            for stage in ["explainer convert", "explainer copy", *(f"explainer {k}" for k in a.latents)]:
                one(stage, first, a.tokens)
    if a.whole_demo:
        ws = Path(a.dir) / f"demo-{a.tokens}"
        if (first / "diff" / "target").exists() and not (ws / "diff" / "target").exists():
            shutil.copytree(first / "diff" / "target", ws / "diff" / "target")
        rows.append(spawn("demo (one process)", ws, a.tokens))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "lines"}), flush=True)
    return rows


def markdown(doc: dict) -> str:
    rows = [r for r in doc["rows"] if not r["stage"].startswith("explainer")]
    peak = {(r["stage"], r["n_tokens"]): r for r in rows}
    out = [f"### Peak memory per stage ({doc['machine']['cpu']}, {doc['machine']['cores']} cores, {doc['date']})",
           "", f"Each stage in its own process, peak RSS from `wait4`; demo settings with {doc['tokens']:,} and "
           f"{2 * doc['tokens']:,} training tokens (the diff: {doc['diff_tokens']:,} and {2 * doc['diff_tokens']:,} "
           "corpus tokens).", "", "| stage | peak at N | peak at 2N | 2N / N | streaming |",
           "| --- | ---: | ---: | ---: | --- |"]
    for stage in DEMO_STAGES:
        n = doc["diff_tokens"] if stage.startswith("diff") else doc["tokens"]
        a, b = peak.get((stage, n)), peak.get((stage, 2 * n))
        if a is None:
            continue
        ratio = f"{b['peak_rss'] / a['peak_rss']:.2f}" if b else "—"
        cell = lambda r: "failed" if r.get("failed") else f"{r['peak_rss'] / GB:.2f} GB"  # noqa: E731
        out.append(f"| {stage} | {cell(a)} | {cell(b) if b else '—'} | {ratio} | "
                   f"{'yes' if stage in STREAMING else ''} |")
    for r in (r for r in doc["rows"] if r["stage"] == "demo (one process)"):
        out.append(f"| `saelab demo`, all stages in one process (N) | {r['peak_rss'] / GB:.2f} GB | | | |")
    ex = [r for r in doc["rows"] if r["stage"].startswith("explainer")]
    if ex:
        out += ["", "| explainer (Qwen2.5-Coder-1.5B) | peak RSS | weights + 2 GB | under | seconds |",
                "| --- | ---: | ---: | --- | ---: |"]
        size = next((r["weights_bytes"] for r in ex if "weights_bytes" in r), None)
        for r in ex:
            bound = (size + HEADROOM) if size else None
            under = "" if bound is None or r.get("failed") else ("yes" if r["peak_rss"] < bound else "NO")
            out.append(f"| {r['stage']} | {r['peak_rss'] / GB:.2f} GB | "
                       f"{bound / GB:.2f} GB | {under} | {r['seconds']:.0f} |" if bound else
                       f"| {r['stage']} | {r['peak_rss'] / GB:.2f} GB | — | | {r['seconds']:.0f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=16_384)
    ap.add_argument("--diff-tokens", type=int, default=32_768)
    ap.add_argument("--latents", type=int, nargs="*", default=[2, 8])
    ap.add_argument("--dir", default="/tmp/saelab-bench-memory")
    ap.add_argument("--out", default=str(ROOT / "bench" / "memory.json"))
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--n-only", action="store_true", help="run the stages at N only (not at 2N)")
    ap.add_argument("--whole-demo", action="store_true",
                    help="also run `saelab demo` in one process at N tokens (fresh workspace, the first one's target)")
    ap.add_argument("--child", default=None)
    a = ap.parse_args()
    if a.child:
        Path(a.out).write_text(json.dumps(child(a.child, Path(a.dir), a.tokens)))
        return
    rows = measure(a)
    out = Path(a.out)
    old = json.loads(out.read_text()) if out.exists() else {}
    fresh = {(r["stage"], r["n_tokens"]) for r in rows}
    rows = [r for r in old.get("rows", []) if (r["stage"], r["n_tokens"]) not in fresh] + rows
    doc = {**old, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "tokens": a.tokens,
           "diff_tokens": a.diff_tokens, "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                                                     "memory_gb": round(os.sysconf("SC_PHYS_PAGES") *
                                                                        os.sysconf("SC_PAGE_SIZE") / GB, 1)},
           "rows": rows}
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(markdown(doc))


if __name__ == "__main__":
    main()
