"""`saelab demo`: the whole pipeline on the embedded defaults."""

from __future__ import annotations

import time
from typing import Optional

import typer

from . import common as opt


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(workspace: Optional[str] = opt.WorkspaceOpt, model: str = opt.Model, corpus: str = opt.Corpus,
             dtype: str = opt.DType, device: str = opt.Device,
             train_tokens: int = typer.Option(327_680, "--train-tokens",
                                              help="Training tokens of the two SAEs (one shared stream)."),
             eval_tokens: int = typer.Option(32_768, "--eval-tokens", help="Held-out tokens for evaluation."),
             ce_tokens: int = typer.Option(4_096, "--ce-tokens",
                                           help="Tokens for the CE/KL splice (3 full forwards each)."),
             full: int = typer.Option(2048, "--full", help="Latents of the narrow SAE ('full')."),
             ultra: int = typer.Option(16384, "--ultra", help="Latents of the wide SAE ('ultra')."),
             k: int = typer.Option(32, "--k", help="Active latents per token (TopK)."),
             batch_size: int = opt.BatchSize,
             train_epochs: float = typer.Option(6.0, "--train-epochs", help="Passes of the SAEs over their "
                                                "training tokens (an activation buffer: one model pass)."),
             train_batch_size: int = typer.Option(4, "--train-batch-size",
                                                  help="Windows per optimiser step of the SAEs."),
             lr_scale: float = typer.Option(8.0, "--lr-scale", help="× the default rate of both SAEs "
                                           "(chosen by a sweep: bench/RESULTS.md)."),
             skip_diff: bool = typer.Option(False, "--skip-diff", help="Skip the model diff (fine-tune SmolLM2 on "
                                            "BBC sport, then `saelab diff` base vs target: a few minutes, more "
                                            "with the Qwen explainer installed).")) -> None:
        """Run the pipeline on the embedded defaults: SmolLM2-135M and English prose → token windows →
        two TopK SAEs at resid_post.6 ('full' 2,048 and 'ultra' 16,384 latents) trained from one stream →
        sparse latent caches → evaluation side by side (and beside PCA at the same L0) → matching ultra ↔ full →
        auto-interp → model diff → report. Ends with each headline number beside its reference point (the report's
        summary.md). Reruns skip finished stages."""
        from ..demo import DemoConfig, run_demo
        from ..workspace import Workspace
        from . import console

        t0 = time.perf_counter()
        ws = Workspace.at(workspace)
        console.rule("[bold]saelab demo")
        console.print(f"workspace: {ws.root.resolve()}")
        cfg = DemoConfig(model=model, corpus=corpus, dtype=dtype, device=device, train_tokens=train_tokens,
                         eval_tokens=eval_tokens, ce_tokens=ce_tokens, widths={"full": full, "ultra": ultra}, k=k,
                         batch_size=batch_size, train_epochs=train_epochs, train_batch_size=train_batch_size,
                         lr_scale=lr_scale, diff=not skip_diff)
        seconds = run_demo(cfg, ws, lambda msg: console.print(msg, highlight=False, markup=False))
        console.rule()
        console.print("seconds per stage: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
        console.print(f"demo finished in {time.perf_counter() - t0:.0f} s; artifacts in {ws.root.resolve()}")
