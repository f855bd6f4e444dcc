"""`saelab eval` and `saelab compare` (under `torchrun -m saelab`, each rank evaluates its share of the windows;
rank 0 writes and prints)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import common as opt

DICT_HELP = ("a name in the workspace, a path (saelab, SAELens, sparsify, dictionary_learning, Gemma Scope, Llama "
             "Scope; or a downloaded tree's root, with the selectors), a Hub repo org/name(/PATH)(@REVISION), or "
             "saelens:RELEASE/ID")
METRICS_HELP = ("Metric groups, comma-separated: reconstruction,sparsity,downstream,absorption "
                "(absorption runs its own prompts: a few minutes; downstream runs 3 full forwards per token).")


def _setup(workspace, model, dtype, device, n_tokens, ce_n_tokens, batch_size, metrics):
    from ..data.run import TokensConfig
    from ..data.run import run as tokens_run
    from ..data.tokens import load_token_windows
    from ..distributed import barrier, init_from_env, is_main, local_device
    from ..evals import EvalConfig
    from ..models.load import load_model
    from ..workspace import Workspace

    ws = Workspace.at(workspace)
    config = EvalConfig(n_tokens=n_tokens, ce_n_tokens=min(ce_n_tokens, n_tokens), batch_size=batch_size,
                        metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()))
    init_from_env(device)  # under torchrun: join the process group (gloo on CPU, nccl on GPUs)
    lm = load_model(model, dtype=dtype, device=local_device(device))
    if not (ws.tokens / "cfg.json").exists() and is_main():  # rank 0 tokenizes; the others read its windows
        tokens_run(TokensConfig(n_tokens=max(2 * n_tokens, 262_144)), ws, lm)
    barrier()
    return ws, config, lm, load_token_windows(ws.tokens)


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_(dict_: str = typer.Option(..., "--dict", "-d", help=f"Dictionary: {DICT_HELP}."),
              model: str = opt.Model, dtype: str = opt.DType,
              device: str = opt.Device,
              n_tokens: int = typer.Option(131_072, "--n-tokens",
                                           help="Tokens for reconstruction and sparsity (cheap: truncated forward)."),
              ce_n_tokens: int = typer.Option(16_384, "--ce-n-tokens",
                                              help="Tokens for the CE/KL splice (3 full forwards each)."),
              batch_size: int = opt.BatchSize,
              metrics: str = typer.Option("reconstruction,sparsity,downstream,absorption", "--metrics",
                                          help=METRICS_HELP),
              workspace: Optional[str] = opt.WorkspaceOpt,
              out: Optional[Path] = typer.Option(None, "--out",
                                                 help="Output directory (default: workspace/evals/NAME)."),
              overwrite: bool = typer.Option(False, "--overwrite", help="Replace an evaluation the output directory "
                                             "holds of other weights, settings, model or tokens (without it that is "
                                             "refused; one of the same inputs is read back)."),
              ground_truth: Optional[Path] = typer.Option(
                  None, "--ground-truth", help="A synthetic model directory (`saelab synth`, or SAELens's "
                  "SyntheticModel.save): score the dictionary against its true features instead (MCC, per-latent "
                  "precision / recall / F1, explained variance, shrinkage, dead latents: SAELens's "
                  "eval_sae_on_synthetic_data, plus features recovered at |cos| ≥ 0.9 / 0.7). No model is loaded."),
              samples: int = typer.Option(100_000, "--samples", help="--ground-truth: samples drawn from the "
                                          "synthetic model (seeded by --seed, apart from every training step's)."),
              seed: int = typer.Option(0, "--seed", help="--ground-truth: seed of the evaluation samples."),
              hookpoint: Optional[str] = opt.SelHookpoint, layer: Optional[int] = opt.SelLayer,
              width: Optional[str] = opt.SelWidth, l0: Optional[str] = opt.SelL0, site: Optional[str] = opt.SelSite,
              cache_dir: Optional[str] = opt.HubCacheDir) -> None:
        """How good is this SAE or transcoder? Writes metrics.json and summary.txt and prints the summary.

        With --ground-truth DIR, a dictionary trained on synthetic activations (`saelab train --synthetic DIR`)
        is scored against the features that generated them."""
        from .._io import check_output_dir
        from ..distributed import is_main
        from ..evals import run_eval
        from . import console

        sel = opt.selector(hookpoint, layer, width, l0, site)
        if out is not None:
            check_output_dir(out, "--out")
        if ground_truth is not None:
            from ..evals.synthetic import run_ground_truth
            from ..workspace import Workspace

            m = run_ground_truth(dict_, ground_truth, Workspace.at(workspace), n_samples=samples, seed=seed,
                                 out_dir=out, overwrite=overwrite, selector=sel)
            if m["reused"]:
                console.print(f"{m['out_dir']} holds this evaluation already; shown as stored (--overwrite "
                              "recomputes it)", highlight=False, markup=False)
            console.print(m["summary_text"], highlight=False, markup=False)
            console.print(f"written: {m['out_dir']}/metrics.json, summary.txt")
            return
        ws, config, lm, windows = _setup(workspace, model, dtype, device, n_tokens, ce_n_tokens, batch_size, metrics)
        m = run_eval(dict_, ws, lm, windows, config, out_dir=out, selector=sel, overwrite=overwrite)
        if not is_main():
            return
        if m.get("reused"):
            console.print(f"{m['out_dir']} holds this evaluation already; shown as stored (--overwrite recomputes "
                          "it)", highlight=False, markup=False)
        console.print(m["summary_text"], highlight=False, markup=False)
        console.print(f"written: {m['out_dir']}/metrics.json, summary.txt")

    @app.command()
    def compare(a: str = typer.Option(..., "--a", help=f"First dictionary: {DICT_HELP}."),
                b: str = typer.Option(..., "--b", help="Second dictionary, or a dense baseline: dense:pca "
                                      "(K = a's L0), dense:pca:K, dense:linear."),
                names: Optional[str] = typer.Option(None, "--names",
                                                    help="Display names, comma-separated: ours,theirs."),
                output_dir: Path = typer.Option(Path("comparison"), "--output-dir", "-o",
                                                help="Where comparison.json, *_metrics.json, summary.txt and plots "
                                                "go."),
                model: str = opt.Model, dtype: str = opt.DType,
                device: str = opt.Device,
                n_tokens: int = typer.Option(131_072, "--n-tokens", help="Tokens for reconstruction and sparsity."),
                ce_n_tokens: int = typer.Option(16_384, "--ce-n-tokens", help="Tokens for the CE/KL splice."),
                batch_size: int = opt.BatchSize,
                metrics: str = typer.Option("reconstruction,sparsity,downstream", "--metrics", help=METRICS_HELP),
                workspace: Optional[str] = opt.WorkspaceOpt,
                hookpoint: Optional[str] = opt.SelHookpoint, layer: Optional[int] = opt.SelLayer,
                width: Optional[str] = opt.SelWidth, l0: Optional[str] = opt.SelL0,
                site: Optional[str] = opt.SelSite, cache_dir: Optional[str] = opt.HubCacheDir,
                overwrite: bool = opt.recompute_option("a comparison", "weights, settings, model and tokens")) -> None:
        """Compare two dictionaries (or one and a dense baseline) on the same tokens: a side-by-side table with a winner
        per metric."""
        from .._io import check_output_dir
        from ..distributed import is_main
        from ..errors import ConfigError
        from ..evals import compare as run_compare
        from ..evals.reconstructors import parse_dense_spec
        from . import console

        pair = tuple(n.strip() for n in names.split(",")) if names else None
        if pair is not None and len(pair) != 2:
            raise ConfigError(f"names: got {names!r}; expected two names separated by a comma, e.g. ours,theirs.")
        sel = opt.selector(hookpoint, layer, width, l0, site)  # picks within whichever of --a / --b is a tree
        check_output_dir(output_dir, "--output-dir")
        if b.startswith("dense:"):
            parse_dense_spec(b)  # its form, before the model loads (K ≤ d_in is checked once --a is read)
        ws, config, lm, windows = _setup(workspace, model, dtype, device, n_tokens, ce_n_tokens, batch_size, metrics)
        r = run_compare(a, b, ws, lm, windows, output_dir, config, names=pair, selector=sel,  # type: ignore[arg-type]
                        overwrite=overwrite)
        if not is_main():
            return
        if r.get("reused"):
            console.print(f"{output_dir} holds this comparison already; shown as stored (--overwrite recomputes it)")
        console.print(r["summary_text"], highlight=False, markup=False)
        console.print(f"written: {output_dir}/comparison.json, summary.txt, fvu_vs_l0.png, firing_frequency.png")
