"""`saelab demo`: the whole pipeline on the embedded model and corpus."""

from __future__ import annotations

import time
from typing import Optional

import typer

from . import common as opt


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(workspace: Optional[str] = opt.WorkspaceOpt, model: str = opt.Model, corpus: str = opt.Corpus,
             n_tokens: int = typer.Option(262_144, "--n-tokens", help="Token budget of the demo's windows."),
             dtype: str = opt.DType, device: str = opt.Device, batch_size: int = opt.BatchSize,
             hookpoint: list[str] = opt.Hookpoints) -> None:
        """Run the pipeline on the embedded defaults: load SmolLM2, tokenize the embedded corpus,
        stream activations at resid_post.6 and print their statistics."""
        from ..activations.run import ActivationsConfig, run as activations_run
        from ..data.run import TokensConfig, run as tokens_run
        from ..models.load import load_model
        from ..workspace import Workspace
        from . import console
        from .basics import print_activation_stats

        t0 = time.perf_counter()
        ws = Workspace.at(workspace)
        console.rule("[bold]saelab demo")
        console.print(f"workspace: {ws.root.resolve()}")
        lm = load_model(model, dtype=dtype, device=device)
        d = lm.describe()
        console.print(f"[bold]1. model[/] {model}: {d['architecture']}, {d['n_layers']} layers, d_model {d['d_model']}, "
                      f"{lm.n_params / 1e6:.0f}M parameters, {d['dtype']} on {d['device']}")
        windows = tokens_run(TokensConfig(corpus=corpus, n_tokens=n_tokens), ws, lm)
        console.print(f"[bold]2. token windows[/] {windows.n_windows:,} × {windows.ctx_len} tokens from "
                      f"{windows.cfg['n_documents']:,} documents of {corpus} → {ws.tokens}")
        console.print(f"[bold]3. activations[/] at {', '.join(hookpoint)} (forward stops after the deepest hookpoint)")
        result = activations_run(ActivationsConfig(hookpoints=tuple(hookpoint), batch_size=batch_size), ws, lm, windows)
        print_activation_stats(result)
        console.print(f"demo finished in {time.perf_counter() - t0:.0f} s; artifacts in {ws.root.resolve()}")
