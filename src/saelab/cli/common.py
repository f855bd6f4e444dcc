"""Options shared by several commands, so they are spelled and documented once."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..models.defaults import DEFAULT_MODEL

Model = typer.Option(DEFAULT_MODEL, "--model", "-m",
                     help="Embedded name (smollm2-135m, gemma3-270m), Hugging Face id, model directory, or .gguf file.")
DType = typer.Option("auto", "--dtype", help="Model dtype: auto | float32 | bfloat16 | float16 (or fp32, bf16, fp16). "
                     "auto: bf16 where the CPU (AMX / AVX512-BF16) or GPU multiplies it fast (~2x fp32), else float32 "
                     "(bf16 on a CPU without them ran 50-300x slower).")
Device = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N.")
def _workspace_dir(value: Optional[str]) -> Optional[str]:
    """--workspace: refused at once when it is a file (or lies under one), before a model loads."""
    if value:
        from .._io import check_output_dir

        check_output_dir(value, "--workspace")
    return value


WorkspaceOpt = typer.Option(None, "--workspace", "-w", callback=_workspace_dir,
                            help="Workspace directory (default: $SAELAB_WORKSPACE or ./saelab-workspace).")
Corpus = typer.Option("mixed-en", "--corpus", "-c",
                      help="Embedded corpus (mixed-en, wiki-en, sotu, bbc-news), a .txt/.jsonl/.parquet path, or a "
                      "Hugging Face dataset repo.")
Split = typer.Option("train", "--split", help="Dataset split, slicing allowed (train[:1%]).")
Column = typer.Option("text", "--column", help="Text column of a dataset / jsonl / parquet file.")
CtxLen = typer.Option(256, "--ctx-len", help="Tokens per window.")
NTokens = typer.Option(1_000_000, "--n-tokens", help="Token budget for the windows.")
Seed = typer.Option(0, "--seed", help="Seed of the document shuffle.")
BatchSize = typer.Option(8, "--batch-size", help="Windows per forward pass.")
Hookpoints = typer.Option(["resid_post.6"], "--hookpoint", "-H",
                          help="Hookpoint or alias (resid_post.6, blocks.6.hook_mlp_out, model.layers.6.mlp); repeat "
                          "for several.")
Overwrite = typer.Option(False, "--overwrite", help="Rebuild the workspace's token windows even if they exist.")


def with_snake_alias(default, flag: str, **kwargs):
    """An option named in kebab case (`--n-tokens`, listed first by --help) that also accepts the seeds' snake_case
    spelling (delphi's `--n_tokens`, SFAL's `--top_n`), so their users can move over. A flag pair keeps its
    `--no-`: `--filter-bos/--no-filter-bos` also accepts `--filter_bos/--no-filter_bos`."""
    def snake(name: str) -> str:
        prefix = "--no-" if name.startswith("--no-") else "--"
        return prefix + name.removeprefix(prefix).replace("-", "_")

    return typer.Option(default, flag, "/".join(map(snake, flag.split("/"))), **kwargs)


def recompute_option(artifact: str, inputs: str):
    """--overwrite of a command that reads back the output it already holds when that was made from the same
    inputs (the command runs with `resume=not overwrite`)."""
    return typer.Option(False, "--overwrite", help=f"Recompute {artifact} the output directory already holds (by "
                        f"default one of the same {inputs} is read back).")


# Selectors: which dictionary of a tree (a downloaded tree or a Hub repo), in the vocabulary of those trees.
SelHookpoint = typer.Option(None, "--hookpoint", help="Tree selector: the hookpoint folder (sparsify repos: "
                            "layers.16; SAELens repos: blocks.8.hook_resid_pre).")
SelLayer = typer.Option(None, "--layer", help="Tree selector: layer (Gemma Scope layer_17, Llama Scope L17R, "
                        "sparsify layers.17).")
SelWidth = typer.Option(None, "--width", "--sae_features", help="Tree selector: Gemma Scope width (16k, 1m, or "
                        "16384) or Llama Scope expansion (8x).")
SelL0 = typer.Option(None, "--l0", "--target_l0", help="Tree selector: Gemma Scope target L0 (the nearest "
                     "average_l0_* is taken) or 'canonical'.")
SelSite = typer.Option(None, "--site", "--sae_type", help="Tree selector: res | mlp | att | transcoder (Gemma Scope "
                       "--sae_type; Llama Scope R, M, A, TC). 'transcoder' also reads a Gemma Scope params.npz as a "
                       "transcoder when its path does not say so.")


def _use_cache_dir(value: Optional[str]) -> Optional[str]:
    """--cache-dir: Hugging Face's hub cache for this command's downloads (HF_HUB_CACHE, read at download time)."""
    if value:
        import os

        os.environ["HF_HUB_CACHE"] = str(Path(value).expanduser())
    return value


HubCacheDir = typer.Option(None, "--cache-dir", callback=_use_cache_dir, help="Hugging Face cache for dictionaries "
                           "downloaded from the Hub (default: HF_HUB_CACHE, else HF_HOME/hub).")


def selector(hookpoint: Optional[str] = None, layer: Optional[int] = None, width: Optional[str] = None,
             l0: Optional[str] = None, site: Optional[str] = None):
    """The tree Selector of the selector options."""
    from ..coders import Selector

    return Selector(hookpoint=hookpoint, layer=layer, width=width, l0=l0, site=site)


def store_name(workspace, spec: str, sel=None) -> str:
    """The latent store of the workspace that a dictionary spec names: the spec itself when it is a name of the
    workspace, else the store `saelab cache -d SPEC` built (found by resolving the spec, from the cache if it was
    downloaded). Raises ArtifactError with the command that builds it when there is none."""
    from ..coders import resolve_dictionary
    from ..errors import ArtifactError
    from ..workspace import is_name

    if is_name(spec) and ((workspace.latents(spec) / "cfg.json").exists()
                          or (workspace.dictionary(spec) / "cfg.json").exists()):
        return spec
    if "/" not in spec and ":" not in spec and not Path(spec).exists():
        return spec  # an unknown name: the command's own error lists what the workspace has
    resolved = resolve_dictionary(spec, workspace=workspace, selector=sel)
    if (workspace.latents(resolved.name) / "cfg.json").exists():
        return resolved.name
    flags = "".join(f" --{k} {v}" for k, v in (sel.as_dict() if sel is not None else {}).items())
    raise ArtifactError(f"{spec}: no latent store of it in {workspace.root / 'latents'} (it would be "
                        f"{resolved.name!r}); build it first: saelab cache -d {spec}{flags}")


__all__ = ["Path", "Optional"]
