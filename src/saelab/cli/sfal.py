"""`saelab cooc`, `saelab embed`, `saelab sfal`: co-occurrence and SFAL alignment scores."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import common as opt

DictOpt = typer.Option([], "--dict", "-d", help="Dictionary with a latent store in the workspace (`saelab cache`): its "
                       "name, or the path / Hub repo / saelens: spec it was cached from (with the tree selectors); "
                       "repeat for several layers.")
LayersOpt = typer.Option([], "--layers", help="Instead of / besides --dict: every latent store of the workspace whose "
                         "hookpoint is at these layers; repeat.")


def _dictionaries(workspace, dicts: list[str], layers: list[int], sel=None) -> list[str]:
    """--dict names plus the stores at --layers (their hookpoint's first number)."""
    import re

    from .._io import read_json
    from ..errors import ConfigError

    names = [opt.store_name(workspace, d, sel) for d in dicts]
    for cfg in sorted((workspace.root / "latents").glob("*/cfg.json")) if layers else []:
        m = re.search(r"\.(\d+)(\.|$)", read_json(cfg).get("hookpoint", ""))
        if m and int(m.group(1)) in layers and cfg.parent.name not in names:
            names.append(cfg.parent.name)
    if not names:
        raise ConfigError(f"dict: none given{' and no latent store at layers ' + str(layers) if layers else ''}; "
                          "give --dict NAME (see `saelab cache`).")
    return names
_NP_HELP = ("neuronpedia:MODEL_ID/SAE_ID (Neuronpedia's public export, "
            "e.g. neuronpedia:gemma-2-2b/20-gemmascope-res-16k, "
            "downloaded once into the saelab cache; SAELAB_OFFLINE=1 uses the cache only)")
ExplOpt = typer.Option(..., "--explanations", "-e",
                       help="top-tokens (no-LLM descriptions from the store), interp (this dictionary's saelab "
                       "autointerp run) or interp:RUN, " + _NP_HELP + ", a downloaded Neuronpedia export (dir or "
                       ".jsonl.gz), a CSV/JSONL of latent,explanation, or an interp run's directory.")
EmbOpt = typer.Option(["all-MiniLM-L6-v2"], "--embeddings",
                      help="Sentence-transformers model (installed name or directory); repeat for several.")
NpType = typer.Option("oai_token-act-pair", "--np-type",
                      help="Neuronpedia explanation type to use (SFAL's default); 'any' for any.")
NpExplainer = typer.Option(None, "--np-explainer",
                           help="Neuronpedia explainer model to use (e.g. gpt-4o-mini); default any.")
NpSae = typer.Option(None, "--np-sae", help="Neuronpedia modelId/layer, when a downloaded export holds several SAEs.")


def _config(embeddings, top_n=1023, overlap_k=10, n_permutations=5, seed=0, np_type="oai_token-act-pair",
            np_explainer=None, np_sae=None):
    from ..sfal import SfalConfig

    return SfalConfig(embeddings=tuple(embeddings), top_n=top_n, overlap_k=overlap_k, n_permutations=n_permutations,
                      seed=seed, neuronpedia_type=None if np_type == "any" else np_type,
                      neuronpedia_explainer=np_explainer, neuronpedia_sae=np_sae)


def register(app: typer.Typer) -> None:
    @app.command()
    def cooc(dict_: list[str] = DictOpt,
             k: int = typer.Option(256, "--k", help="Tokens per co-occurrence window (SFAL: 256)."),
             window: str = typer.Option("non-overlapping", "--window", help="non-overlapping (SFAL) | sliding."),
             stride: Optional[int] = typer.Option(None, "--stride",
                                                  help="Sliding windows: start-to-start distance (default k/4)."),
             partial: str = typer.Option("drop", "--partial", help="Document tails / documents shorter than k: drop "
                                         "(SFAL; counted) | keep (one shorter window)."),
             level: str = typer.Option("window", "--level", help="window | token (token-level co-occurrence)."),
             n_docs: Optional[int] = opt.with_snake_alias(None, "--n-docs", help="Use only the first N documents."),
             n_tokens: Optional[int] = opt.with_snake_alias(None, "--n-tokens",
                                                            help="Use only the first N token positions."),
             top_k: int = typer.Option(64, "--top-k", help="Neighbours kept per latent (φ, Jaccard, NPMI)."),
             overwrite: bool = typer.Option(False, "--overwrite", help="Recount where cooc/NAME holds counts of "
                                            "other settings or of a store rebuilt since (without it that is "
                                            "refused; counts of the same ones are read back)."),
             layers: list[int] = LayersOpt, workspace: Optional[str] = opt.WorkspaceOpt,
             hookpoint: Optional[str] = opt.SelHookpoint, layer: Optional[int] = opt.SelLayer,
             width: Optional[str] = opt.SelWidth, l0: Optional[str] = opt.SelL0, site: Optional[str] = opt.SelSite,
              cache_dir: Optional[str] = opt.HubCacheDir,
             ) -> None:
        """Count which latents fire together in k-token windows (sparse C = BᵀB) and store top-k neighbours.

        Under `torchrun -m saelab cooc …` each process counts its block of windows (gloo: the work is on the
        CPU); rank 0 sums the counts exactly and writes them."""
        from ..cooc import CoocConfig, run
        from ..distributed import init_from_env
        from ..workspace import Workspace
        from . import console

        config = CoocConfig(k=k, window=window, stride=stride, partial=partial, level=level,  # type: ignore[arg-type]
                            n_docs=n_docs, n_tokens=n_tokens, top_k=top_k)
        ws = Workspace.at(workspace)
        rank, _ = init_from_env("cpu")
        for name in _dictionaries(ws, dict_, layers, opt.selector(hookpoint, layer, width, l0, site)):
            c = run(config, ws, name, overwrite=overwrite)
            if rank > 0:
                continue
            skipped = c.cfg["counts"]
            console.print(f"{name}: N = {c.counts.n_windows:,} windows, {c.counts.pairs.nnz:,} co-occurring pairs, "
                          f"{c.cfg['n_dead']:,} dead latents; skipped: {skipped} ({c.cfg['seconds']:.1f} s) → {c.path}")

    @app.command()
    def embed(dict_: str = typer.Option(..., "--dict", "-d",
                                        help="Dictionary name (for its d_sae and, with top-tokens, its store)."),
              explanations: str = ExplOpt, embeddings: list[str] = EmbOpt, np_type: str = NpType,
              np_explainer: Optional[str] = NpExplainer, np_sae: Optional[str] = NpSae,
              workspace: Optional[str] = opt.WorkspaceOpt) -> None:
        """Embed explanations with sentence-transformers (cached on disk by model and text)."""
        from ..sfal import embed_explanations, explanations_for
        from ..workspace import Workspace
        from . import console

        ws = Workspace.at(workspace)
        config = _config(embeddings, np_type=np_type, np_explainer=np_explainer, np_sae=np_sae)
        expl = explanations_for(explanations, config, ws, dict_)
        out = embed_explanations(expl, config, ws)
        for model, (latents, vectors) in out.items():
            console.print(f"{model}: {latents.size:,} {expl.kind}s embedded ({vectors.shape[1]}-d); "
                          f"skipped: {dict(expl.skipped) or 'none'}")

    @app.command()
    def sfal(dict_: list[str] = DictOpt,
             explanations: list[str] = typer.Option(..., "--explanations", "-e",
                                                    help="One per --dict (or one for all): top-tokens, interp (the "
                                                    "dictionary's autointerp run) or interp:RUN, " + _NP_HELP + ", a "
                                                    "downloaded Neuronpedia export, a CSV/JSONL, or an interp run's "
                                                    "directory."),
             embeddings: list[str] = EmbOpt,
             top_n: int = opt.with_snake_alias(1023, "--top-n", help="Ranking length (SFAL: 1023)."),
             overlap_k: int = typer.Option(10, "--overlap-k", help="k of the top-k overlap measure."),
             n_permutations: int = typer.Option(5, "--n-permutations", help="Shuffles for the random baseline."),
             seed: int = typer.Option(0, "--seed"), np_type: str = NpType, np_explainer: Optional[str] = NpExplainer,
             np_sae: Optional[str] = NpSae,
             interp_scores: Optional[Path] = typer.Option(None, "--interp-scores", help="CSV/JSONL of auto-interp "
                                                          "scores (latent + numeric columns) to correlate with."),
             output: Optional[Path] = typer.Option(None, "--output", "-o", help="CSV path (one --dict only; default "
                                                   "workspace/sfal/NAME/scores.csv)."),
             layers: list[int] = LayersOpt, workspace: Optional[str] = opt.WorkspaceOpt,
             hookpoint: Optional[str] = opt.SelHookpoint, layer: Optional[int] = opt.SelLayer,
             width: Optional[str] = opt.SelWidth, l0: Optional[str] = opt.SelL0, site: Optional[str] = opt.SelSite,
              cache_dir: Optional[str] = opt.HubCacheDir) -> None:
        """Per-latent NDCG of co-occurrence (φ) neighbours against explanation similarity, with a shuffled baseline."""
        from ..errors import ConfigError
        from ..sfal import run
        from ..workspace import Workspace
        from . import console

        ws = Workspace.at(workspace)
        dict_ = _dictionaries(ws, dict_, layers, opt.selector(hookpoint, layer, width, l0, site))
        if len(explanations) not in (1, len(dict_)):
            raise ConfigError(f"explanations: got {len(explanations)} for {len(dict_)} dictionaries; give one, or one "
                              "per --dict.")
        if output is not None and len(dict_) > 1:
            raise ConfigError("output: one CSV path for several dictionaries; leave --output out (one CSV per "
                              "dictionary).")
        config = _config(embeddings, top_n, overlap_k, n_permutations, seed, np_type, np_explainer, np_sae)
        for i, name in enumerate(dict_):
            r = run(config, ws, name, explanations[i if len(explanations) > 1 else 0], output=output,
                    interp_scores=interp_scores)
            console.print(r.summary.read_text(encoding="utf-8"), highlight=False, markup=False)
            console.print(f"written: {r.csv}, {r.summary}")
