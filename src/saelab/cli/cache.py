"""`saelab cache`: encode the workspace's token windows with one or several dictionaries
and store their sparse latent activations (`workspace/latents/NAME/`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import ConfigError
from . import common as opt

DICT_HELP = ("Dictionary: NAME (workspace/dictionaries/NAME), a PATH in any format saelab reads (or a downloaded "
             "tree's root, with the selectors), a Hub repo org/name(/PATH)(@REVISION), saelens:RELEASE/ID, or "
             "STORE=SPEC to name its store; repeat to encode several in one pass.")


def _resolve(spec: str, workspace, selector) -> tuple[str, object]:
    """`SPEC` or `STORE=SPEC` → (store name, the resolved dictionary)."""
    from ..coders import resolve_dictionary

    name, eq, rest = spec.partition("=")
    if eq and name and "/" not in name:
        return name, resolve_dictionary(rest, workspace=workspace, selector=selector, arg="--dict")
    resolved = resolve_dictionary(spec, workspace=workspace, selector=selector, arg="--dict")
    return resolved.name, resolved


def print_summary(paths: dict[str, Path], seconds: float, n_positions: int) -> None:
    from ..latents import LatentStore
    from . import console

    # no tok/s here: a resumed run's seconds cover only the shards it cached (the progress lines give the rate)
    table = Table(title=f"Latent stores ({n_positions:,} positions; this run {seconds:.0f} s)")
    for col in ("store", "hookpoint", "text tokens", "latents", "dead", "mean L0", "disk"):
        table.add_column(col, justify="left" if col in ("store", "hookpoint") else "right")
    for name, path in paths.items():
        s = LatentStore(path).summary()
        table.add_row(f"{name}\n[dim]{path}[/]", s["hookpoint"], f"{s['n_text_tokens']:,}", f"{s['d_sae']:,}",
                      f"{s['n_dead']:,}", f"{s['mean_l0']:.1f}", f"{s['disk_bytes'] / 2**20:.1f} MB")
    console.print(table)
    console.print(f"[dim]not stored: positions excluded by the token windows ({', '.join(s['excluded'])})[/]")


def register(app: typer.Typer) -> None:
    @app.command()
    def cache(dict_: list[str] = typer.Option(..., "--dict", "-d", help=DICT_HELP),
              model: str = opt.Model, dtype: str = opt.DType, device: str = opt.Device,
              batch_size: int = opt.BatchSize,
              shard_windows: int = typer.Option(256, "--shard-windows",
                                                help="Windows per shard (a multiple of --batch-size)."),
              value_dtype: str = typer.Option("bfloat16", "--value-dtype", help="Stored values: float16 | bfloat16."),
              n_windows: Optional[int] = typer.Option(None, "--n-windows", help="Cache only the first N windows."),
              workspace: Optional[str] = opt.WorkspaceOpt,
              overwrite: bool = typer.Option(False, "--overwrite", help="Rebuild stores that exist. Without "
                                             "it a rerun resumes a store made the same way, and stops at one made "
                                             "with other settings, weights or token windows."),
              hookpoint: Optional[str] = opt.SelHookpoint, layer: Optional[int] = opt.SelLayer,
              width: Optional[str] = opt.SelWidth, l0: Optional[str] = opt.SelL0, site: Optional[str] = opt.SelSite,
              cache_dir: Optional[str] = opt.HubCacheDir,
              ) -> None:
        """Cache sparse latent activations over the workspace's token windows (resumable; torchrun shards by rank).

        One forward pass serves every dictionary and stops after the deepest hookpoint they read.
        Run it again after an interruption: finished shards are kept.
        """
        from ..coders import load_resolved
        from ..data.tokens import load_token_windows
        from ..distributed import init_from_env, local_device
        from ..latents import CacheConfig, run
        from ..models.load import load_model
        from ..workspace import Workspace, check_name

        config = CacheConfig(batch_size=batch_size, shard_windows=shard_windows, n_windows=n_windows,
                             value_dtype=value_dtype)  # type: ignore[arg-type]
        ws = Workspace.at(workspace)
        sel = opt.selector(hookpoint, layer, width, l0, site)
        specs = [_resolve(s, ws, sel) for s in dict_]
        names = [check_name(n, "--dict (its store name; give another with NEW_NAME=SPEC)") for n, _ in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"--dict: store names repeat ({', '.join(names)}); name them with NAME=PATH.")
        rank, _ = init_from_env(device)
        windows = load_token_windows(ws.tokens)
        lm = load_model(model, dtype=dtype, device=local_device(device))
        coders = {name: load_resolved(resolved, device=lm.device, site=sel.site) for name, resolved in specs}
        t0 = time.perf_counter()
        paths = run(config, ws, lm, windows, coders, overwrite=overwrite, progress=rank == 0)
        n_pos = (config.n_windows or windows.n_windows) * windows.ctx_len
        if rank == 0:
            print_summary(paths, time.perf_counter() - t0, min(n_pos, windows.n_tokens))
