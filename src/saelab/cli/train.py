"""`saelab train`: train SAEs / transcoders on a model's activations (one stream, several dictionaries)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from . import common as opt


def dictionary_specs(hookpoints: list[str], d_saes: list[int], architecture: str, k: int,
                     transcode_to: str | None, skip: bool, group_sizes: str | None, name: str | None) -> tuple:
    """One DictionarySpec per (hookpoint, d_sae). Names: `name` when there is one dictionary,
    else `name-<hookpoint>-<d_sae>`; the default name says what the dictionary is."""
    from ..train import DictionarySpec

    if transcode_to and len(hookpoints) > 1:
        raise ConfigError("--transcode-to: a transcoder reads one hookpoint; give a single --hookpoint.")
    groups = tuple(int(g) for g in group_sizes.split(",")) if group_sizes else None
    kind = "tc" if transcode_to else architecture
    specs = []
    for hp in hookpoints:
        for d_sae in d_saes:
            auto = f"{kind}-{hp}" + (f"-to-{transcode_to}" if transcode_to else "") + f"-{d_sae}-k{k}"
            if name is None:
                dict_name = auto
            elif len(hookpoints) * len(d_saes) == 1:
                dict_name = name
            else:
                dict_name = f"{name}-{hp}-{d_sae}" if len(hookpoints) > 1 else f"{name}-{d_sae}"
            specs.append(DictionarySpec(name=dict_name.replace("/", "_"), hookpoint=hp, d_sae=d_sae, k=k,
                                        architecture=architecture, out_hookpoint=transcode_to, skip=skip,
                                        group_sizes=groups))  # type: ignore[arg-type]
    return tuple(specs)


def widths(d_sae: list[int], expansion_factor: list[int], d_model: int) -> list[int]:
    """--d-sae values, else expansion factors × d_model (the input width of resid/mlp_out hookpoints)."""
    if d_sae and expansion_factor:
        raise ConfigError("--d-sae and --expansion-factor: give one of them, not both.")
    return list(d_sae) or [f * d_model for f in (expansion_factor or [8])]


def random_init_model(model: str, seed: int) -> str:
    """--random-init: `random:MODEL@SEED`, the control model (MODEL's architecture and tokenizer, weights drawn by
    its own initialisation with --seed)."""
    from ..models.random_init import parse_random_spec

    if parse_random_spec(model, "--model") is not None:
        raise ConfigError(f"--random-init: --model is already {model!r}; drop --random-init, or give the trained "
                          "model's spec to --model.")
    return f"random:{model}@{seed}"


def refuse_other_windows(ctx: typer.Context, tokens_dir: Path, cfg: dict, **given: object) -> None:
    """The workspace already has token windows, and training reads those: an option that was given on the
    command line (not left at its default) and says other windows is refused, naming both and the fix."""
    stored = {"corpus": cfg.get("corpus_spec", cfg.get("corpus")), "ctx_len": cfg.get("ctx_len")}
    for name, value in given.items():
        source = ctx.get_parameter_source(name)
        if source is not None and source.name != "DEFAULT" and value != stored[name]:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag}: got {value!r}, but the workspace's token windows ({tokens_dir}) were made "
                              f"with {name} {stored[name]!r}, and train reads those; drop {flag} to train on them, "
                              f"or use another --workspace (-w) for {value!r}.")


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        ctx: typer.Context,
        hookpoint: list[str] = opt.Hookpoints,
        architecture: str = typer.Option("topk", "--architecture", "-a", help="topk | batchtopk | matryoshka."),
        d_sae: list[int] = typer.Option([], "--d-sae", help="Latents; repeat to train several widths from one stream."),
        expansion_factor: list[int] = typer.Option([], "--expansion-factor", "-e",
                                                   help="Latents = factor × d_model (default 8); repeatable."),
        k: int = typer.Option(32, "--k", "-k", help="Active latents per token (on average for batchtopk/matryoshka)."),
        n_tokens: int = typer.Option(1_000_000, "--n-tokens",
                                     help="Training tokens (window tokens, as sparsify counts)."),
        batch_size: int = typer.Option(8, "--batch-size", help="Windows per optimiser step (and per forward pass); "
                                       "under torchrun the global batch, split over the ranks."),
        epochs: float = typer.Option(1.0, "--epochs", help="Passes over the training tokens. Above 1 their "
                                     "activations are computed once into a buffer (WORKSPACE/buffers, reused by "
                                     "later runs) and read again: many steps from few model forwards."),
        steps: Optional[int] = typer.Option(None, "--steps", help="Optimiser steps over the buffered tokens "
                                            "(instead of --epochs)."),
        heldout_windows: int = typer.Option(8, "--heldout-windows", help="Windows after the training ones whose "
                                            "FVU is logged while training (0: none)."),
        lr: Optional[float] = typer.Option(None, "--lr",
                                           help="Adam rate (default 2e-4 / sqrt(d_sae / 2^14), as sparsify)."),
        lr_scale: float = typer.Option(1.0, "--lr-scale", help="Multiplies the default rate (not --lr); short "
                                       "runs want more (the demo's 1,908 steps use 8: bench/RESULTS.md)."),
        lr_warmup_steps: Optional[int] = typer.Option(None, "--lr-warmup-steps",
                                                      help="Default: 5% of the steps, ≤ 1000."),
        auxk_alpha: float = typer.Option(1 / 32, "--auxk-alpha", help="Weight of the AuxK loss (0: off)."),
        dead_tokens: int = typer.Option(10_000_000, "--dead-tokens",
                                        help="Tokens without firing before a latent is dead (AuxK then trains it); "
                                        "a run shorter than this never has dead latents: the demo uses 100,000."),
        transcode_to: Optional[str] = typer.Option(None, "--transcode-to",
                                                   help="Train a transcoder predicting this hookpoint."),
        skip: bool = typer.Option(False, "--skip", help="Transcoders: add a linear skip connection."),
        group_sizes: Optional[str] = typer.Option(None, "--group-sizes",
                                                  help="Matryoshka group sizes, e.g. 128,384,3584."),
        name: Optional[str] = typer.Option(None, "--name", help="Dictionary name (prefix when several)."),
        checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Steps between checkpoints."),
        first_window: int = typer.Option(0, "--first-window", help="First workspace window to train on."),
        seed: int = typer.Option(0, "--seed", help="Seed of the initialisation and of the token shuffle."),
        random_init: bool = typer.Option(False, "--random-init", help="Train on a randomly initialised copy of "
                                         "--model: random:MODEL@SEED (SEED = --seed), its architecture and "
                                         "tokenizer with weights that learned nothing; the control for auto-interp "
                                         "scores (Heap et al. 2025). Default names start with random-."),
        synthetic: Optional[Path] = typer.Option(None, "--synthetic", help="Train on samples of a synthetic model "
                                                 "with known features (`saelab synth`, or a directory SAELens's "
                                                 "SyntheticModel.save wrote) instead of a language model: --n-tokens "
                                                 "counts samples, --batch-size samples per step (default 1024); score "
                                                 "the result with `saelab eval --ground-truth`."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Train from scratch over a run (and its "
                                       "dictionaries) made with other options. Without it a rerun resumes from the "
                                       "checkpoint when the options match, and stops with an error when they do not."),
        _resume: bool = typer.Option(False, "--resume", hidden=True, help="Accepted for older scripts; resuming is "
                                     "the default."),
        distribute_dictionaries: bool = typer.Option(False, "--distribute-dictionaries", help="Under torchrun: "
                                                     "spread the run's dictionaries over the ranks (each reads every "
                                                     "window and trains its share) instead of splitting every "
                                                     "batch over them (data parallel, the default)."),
        model: str = opt.Model, dtype: str = opt.DType, device: str = opt.Device, corpus: str = opt.Corpus,
        ctx_len: int = opt.CtxLen, workspace: Optional[str] = opt.WorkspaceOpt,
    ) -> None:
        """Train TopK / BatchTopK / Matryoshka SAEs or transcoders; all dictionaries share one model pass.

        Dictionaries go to WORKSPACE/dictionaries/NAME (saelab format; cfg.json records the training);
        the checkpoint and JSONL log of the run to WORKSPACE/train/NAME. Sink (position 0) and special
        tokens are excluded from training, as the workspace's token windows say. Run it again after an
        interruption: it resumes from the last checkpoint (--overwrite starts over).

        Under torchrun (`torchrun --nproc_per_node N -m saelab train ...`, a workspace every rank sees) the
        training is data parallel, with the one-process result; --distribute-dictionaries spreads the
        dictionaries over the ranks instead. A checkpoint resumes on as many ranks.
        """
        from ..data.run import TokensConfig
        from ..data.run import run as tokens_run
        from ..data.tokens import load_token_windows
        from ..distributed import barrier, init_from_env, local_device, on_main
        from ..models.load import load_model
        from ..models.random_init import parse_random_spec
        from ..train import TrainConfig, run
        from ..train.run import resumable, run_directory, run_fingerprint
        from ..workspace import Workspace, check_name
        from . import console

        ws = Workspace.at(workspace)
        rank, world = init_from_env(device)
        parallel = "dictionaries" if distribute_dictionaries else "data"
        if synthetic is not None:
            if name is not None:
                check_name(name, "--name")
            given = ctx.get_parameter_source("batch_size")
            rows = batch_size if given is not None and given.name != "DEFAULT" else 1024
            _print_results(train_synthetic(ctx, synthetic, ws, d_sae, expansion_factor, architecture, k, transcode_to,
                                           group_sizes, name, dict(n_tokens=n_tokens, batch_size=rows,
                                           shuffle_windows=rows, epochs=epochs, steps=steps, lr_scale=lr_scale,
                                           lr=lr, lr_warmup_steps=lr_warmup_steps, auxk_alpha=auxk_alpha,
                                           dead_tokens=dead_tokens, seed=seed, checkpoint_every=checkpoint_every),
                                           overwrite, parallel), rank)
            return
        if random_init:
            trained, model = model, random_init_model(model, seed)
            if rank == 0:
                console.print(f"--random-init: training on {model}: {trained}'s architecture, config and tokenizer "
                              f"with every weight randomly initialised (seed {seed}), a control for auto-interp "
                              "scores", highlight=False, markup=False)
        if name is not None:  # before anything loads or is written: a name is one directory of the workspace
            check_name(name, "--name")
        windows = load_token_windows(ws.tokens) if (ws.tokens / "cfg.json").exists() else None
        if windows is not None:  # checked before the model loads: a refusal costs nothing
            refuse_other_windows(ctx, ws.tokens, windows.cfg, corpus=corpus, ctx_len=ctx_len)
        lm = load_model(model, dtype=dtype, device=local_device(device))
        if windows is None:  # made by rank 0; the others read them once written
            if rank == 0:
                tokens_run(TokensConfig(corpus=corpus, ctx_len=ctx_len,
                                        n_tokens=n_tokens + (first_window + heldout_windows) * ctx_len), ws, lm)
            barrier()
            windows = load_token_windows(ws.tokens)
        specs = dictionary_specs(hookpoint, widths(d_sae, expansion_factor, lm.d_model), architecture, k,
                                 transcode_to, skip, group_sizes, name)
        if name is None and parse_random_spec(lm.spec) is not None:  # never the default names of the trained model's
            specs = tuple(replace(s, name=f"random-{s.name}") for s in specs)
        config = TrainConfig(specs, n_tokens=n_tokens, batch_size=batch_size, shuffle_windows=8 * batch_size,
                             epochs=epochs, steps=steps, heldout_windows=heldout_windows, lr_scale=lr_scale,
                             first_window=first_window, lr=lr, lr_warmup_steps=lr_warmup_steps, auxk_alpha=auxk_alpha,
                             dead_tokens=dead_tokens, seed=seed, checkpoint_every=checkpoint_every)
        run_dir = run_directory(ws, config, name)
        # checked again under the run's lock by `run`; here to say it before the work starts (rank 0 decides)
        if not overwrite and on_main(lambda: resumable(run_dir, run_fingerprint(config, windows, lm),
                                                       [ws.dictionary(s.name) for s in specs], world, parallel)):
            if rank == 0:
                console.print(f"resuming {run_dir} from its checkpoint (--overwrite starts over)")
        _print_results(run(config, ws, lm, windows, run_name=name, resume=False if overwrite else None,
                           parallel=parallel), rank)


def train_synthetic(ctx: typer.Context, path: Path, ws, d_sae: list[int], expansion_factor: list[int],
                    architecture: str, k: int, transcode_to: str | None, group_sizes: str | None, name: str | None,
                    options: dict, overwrite: bool, parallel: str = "data") -> list[Path]:
    """`train --synthetic PATH`: SAEs of the synthetic model's activations (hookpoint `synthetic`)."""
    from ..synth import load_synth_model
    from ..train import TrainConfig
    from ..train.synthetic import SYNTHETIC_HOOKPOINT, run_synthetic

    for flag, param in (("--hookpoint", "hookpoint"), ("--model", "model"), ("--random-init", "random_init"),
                        ("--transcode-to", "transcode_to")):
        source = ctx.get_parameter_source(param)
        if source is not None and source.name != "DEFAULT":
            raise ConfigError(f"{flag}: a synthetic run (--synthetic) trains SAEs of the synthetic model's samples; "
                              f"drop {flag}.")
    model = load_synth_model(path)
    d_in = int(model.feature_vectors.shape[1])
    specs = dictionary_specs([SYNTHETIC_HOOKPOINT], widths(d_sae, expansion_factor, d_in), architecture, k,
                             transcode_to, False, group_sizes, name)
    return run_synthetic(TrainConfig(specs, **options), ws, model, path, run_name=name,
                         resume=False if overwrite else None, parallel=parallel)  # type: ignore[arg-type]


def _print_results(paths: list[Path], rank: int = 0) -> None:
    """One line per trained dictionary (by rank 0): held-out and training FVU, L0, dead latents, decoder movement."""
    from ..coders.base import read_native_cfg
    from . import console

    for path in paths if rank == 0 else []:
            m = read_native_cfg(path).extra["training"]["final"]
            held = f"held-out FVU {m['heldout_fvu']:.3f}, " if m.get("heldout_fvu") is not None else ""
            moved = (f"; decoder rows' median cosine to their initialisation {m['decoder_cos_init']:.2f}"
                     if m.get("decoder_cos_init") is not None else "")
            console.print(f"{path}: {held}FVU {m['fvu']:.3f}, L0 {m['l0']:.1f}, "
                          f"dead {m['dead_fraction']:.1%} (training, last 10 steps){moved}")
