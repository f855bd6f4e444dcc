"""saelab's core metrics vs SAELens's `run_evals`, same dictionary, same tokens, one run.

1. A TopK SAE (4,096 latents, k = 32) at SmolLM2 resid_post.6: `--dict PATH`, or trained
   here with saelab's trainer on held-apart windows.
2. Equal footing: both tools evaluate the same windows in the same batches of 8 with no
   positions excluded (SAELens `ignore_tokens=set()`, saelab `exclude=()`), fp32. Where
   the definitions agree (CE clean/spliced/ablated, CE-loss score, KL score, legacy
   explained variance, L0, cosine), the numbers must agree to numerical tolerance.
3. saelab as it runs by default (attention sink and special tokens excluded), for the record.

    .venv/bin/python bench/evals.py [--dict PATH] [--n-windows 32] [--saelens-python .venv-saelens/bin/python]

The SAELens side runs bench/_saelens_evals.py in `.venv-saelens` (sae-lens; `make venv-saelens` builds it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

from safetensors.torch import save_file

from saelab.coders import load_dictionary
from saelab.coders.export import export_saelens
from saelab.data import TokenizeConfig, load_corpus, tokenize_corpus
from saelab.evals import CoderReconstructor, EvalConfig, evaluate_many
from saelab.models import load_model
from saelab.workspace import Workspace

PAIRS = [  # (label, saelab group.key, SAELens key)
    ("CE loss, clean", "downstream.ce_loss_clean", "ce_loss_without_sae"),
    ("CE loss, spliced", "downstream.ce_loss_with_reconstruction", "ce_loss_with_sae"),
    ("CE loss, zero-ablated", "downstream.ce_loss_zero_ablation", "ce_loss_with_ablation"),
    ("CE-loss score", "downstream.ce_loss_score", "ce_loss_score"),
    ("KL, spliced", "downstream.kl_with_reconstruction", "kl_div_with_sae"),
    ("KL score", "downstream.kl_score", "kl_div_score"),
    ("explained variance (legacy)", "reconstruction.explained_variance_legacy", "explained_variance_legacy"),
    ("explained variance (1 − FVU)", "reconstruction.explained_variance", "explained_variance"),
    ("L0", "sparsity.l0", "l0"),
    ("cosine(x, x̂)", "reconstruction.cossim", "cossim"),
    ("relative reconstruction bias", "reconstruction.relative_reconstruction_bias", "relative_reconstruction_bias"),
    ("MSE", "reconstruction.mse", "mse"),
]


def get(m: dict, dotted: str):
    group, key = dotted.split(".")
    return m.get(group, {}).get(key)


def train_sae(lm, out: Path) -> Path:
    from saelab.data.run import TokensConfig
    from saelab.data.run import run as tokens_run
    from saelab.train import run as train_run
    from saelab.train.config import DictionarySpec, TrainConfig

    ws = Workspace(out)
    windows = tokens_run(TokensConfig(n_tokens=131_072, seed=123), ws, lm)
    train_run(TrainConfig(dictionaries=(DictionarySpec("sae4096", "resid_post.6", 4096, 32),), n_tokens=131_072),
              ws, lm, windows)
    return ws.dictionary("sae4096")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dict", type=Path)
    ap.add_argument("--n-windows", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--saelens-python", default=".venv-saelens/bin/python")
    ap.add_argument("--out", default="bench/evals.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="saelab-bench-evals-"))

    lm = load_model("smollm2-135m", dtype="float32")
    dict_path = args.dict or train_sae(lm, tmp / "ws")
    coder = load_dictionary(dict_path)
    windows = tokenize_corpus(load_corpus("mixed-en"), lm.tokenizer,
                              TokenizeConfig(ctx_len=256, n_tokens=args.n_windows * 256, seed=7, exclude=()))
    n_tok = windows.n_tokens
    cfg = EvalConfig(n_tokens=n_tok, ce_n_tokens=n_tok, batch_size=args.batch_size, first_window=0,
                     metrics=("reconstruction", "sparsity", "downstream"))
    rec = CoderReconstructor(coder, "sae")
    t0 = time.perf_counter()
    ours = evaluate_many([rec], lm, windows, cfg, progress=False)[0]
    t_ours = time.perf_counter() - t0
    default_windows = replace(windows, config=replace(windows.config, exclude=("sink", "special")))
    ours_default = evaluate_many([rec], lm, default_windows, cfg, progress=False)[0]

    export_saelens(coder, tmp / "saelens_sae")
    save_file({"tokens": windows.tokens.contiguous()}, str(tmp / "tokens.safetensors"))
    subprocess.run([args.saelens_python, "bench/_saelens_evals.py", lm.path, str(tmp / "saelens_sae"),
                    str(tmp / "tokens.safetensors"), str(args.batch_size), str(tmp / "saelens.json")], check=True)
    theirs = json.loads((tmp / "saelens.json").read_text())

    rows = [{"metric": label, "saelab": get(ours, k), "saelens": theirs["metrics"].get(sk),
             "saelab_default_exclusions": get(ours_default, k)} for label, k, sk in PAIRS]
    result = {"date": date.today().isoformat(), "tokens": n_tok, "batch_size": args.batch_size, "dtype": "float32",
              "dictionary": str(dict_path), "seconds_saelab": t_ours, "seconds_saelens": theirs["seconds_eval"],
              "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{result['date']}: SmolLM2-135M resid_post.6, TopK SAE {coder.cfg.d_sae} latents k={coder.cfg.k}, "
          f"{n_tok:,} tokens ({args.n_windows} windows × 256, batches of {args.batch_size}), fp32\n")
    print("| metric | saelab | SAELens run_evals | |Δ| | saelab default (sink + specials excluded) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        a, b, c = r["saelab"], r["saelens"], r["saelab_default_exclusions"]
        d = abs(a - b) if isinstance(a, float) and isinstance(b, float) else None
        fmt = lambda v: f"{v:.5g}" if isinstance(v, (int, float)) else "—"  # noqa: E731
        print(f"| {r['metric']} | {fmt(a)} | {fmt(b)} | {fmt(d)} | {fmt(c)} |")
    print(f"\nwall time of the evaluation itself (model loaded): saelab {t_ours:.1f} s, "
          f"SAELens {theirs['seconds_eval']:.1f} s "
          f"→ {theirs['seconds_eval'] / t_ours:.2f}× ")


if __name__ == "__main__":
    main()
