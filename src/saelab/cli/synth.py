"""`saelab synth OUT`: a synthetic world with known features (SAELens's SyntheticModel layout) to train and
evaluate on (`saelab train --synthetic OUT`, `saelab eval --ground-truth OUT`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError


def synth_config(preset_name: str, config: Optional[Path], features: Optional[int], hidden_dim: Optional[int],
                 seed: Optional[int]):
    """The SynthConfig a `saelab synth` command line says: a preset or a config JSON, with overrides."""
    from .._io import read_json
    from ..synth import SynthConfig
    from ..synth.presets import preset, scaled

    d = read_json(config, "a synthetic model config (SAELens SyntheticModelConfig.to_dict())") if config else \
        preset(preset_name)
    if not isinstance(d, dict):
        raise ConfigError(f"--config: got {config} holding {type(d).__name__}; expected a JSON object, "
                          "SAELens's SyntheticModelConfig.to_dict().")
    if features is not None or hidden_dim is not None:
        d = scaled(d, features or d["num_features"], hidden_dim or d["hidden_dim"])
    if seed is not None:
        d["seed"] = seed
    return SynthConfig.from_dict(d)


def register(app: typer.Typer) -> None:
    @app.command()
    def synth(
        out: Path = typer.Argument(..., help="Directory to write (synthetic_model_config.json, "
                                   "synthetic_model.safetensors, hierarchy.json: SAELens's layout)."),
        preset_name: str = typer.Option("synthsaebench-4k", "--preset", help="A named world: synthsaebench-4k "
                                        "(SynthSAEBench-16k's config at 4,096 features in 256 dimensions)."),
        config: Optional[Path] = typer.Option(None, "--config", help="A SAELens SyntheticModelConfig as JSON (its "
                                              "to_dict(), or a saved model's synthetic_model_config.json) instead "
                                              "of --preset."),
        features: Optional[int] = typer.Option(None, "--features", help="Override num_features."),
        hidden_dim: Optional[int] = typer.Option(None, "--hidden-dim", help="Override hidden_dim."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Override the world's seed."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing synthetic model in OUT."),
    ) -> None:
        """Make a synthetic activation model with known ground-truth features (SynthSAEBench's ingredients:
        Zipfian firing, hierarchy, low-rank correlations, orthogonalised features). A model SAELens saved (or
        one from the Hub) needs no conversion: pass its directory to `train --synthetic` directly."""
        from .._io import check_output_dir
        from ..synth import make_synth_model
        from . import console

        check_output_dir(out, "OUT")
        if (out / "synthetic_model.safetensors").exists() and not overwrite:
            raise ConfigError(f"OUT: {out} already holds a synthetic model; --overwrite to replace it, or another "
                              "directory.")
        cfg = synth_config(preset_name, config, features, hidden_dim, seed)
        model = make_synth_model(cfg)
        model.save(out)
        import torch

        _, acts = model.sample(4096, generator=torch.Generator().manual_seed(0))
        l0 = float((acts > 0).sum(1).float().mean())
        console.print(f"{out}: {cfg.num_features:,} features in {cfg.hidden_dim} dimensions; true L0 {l0:.1f} "
                      "(features firing per sample, over 4,096 samples)", highlight=False)
        console.print(f"next: saelab train --synthetic {out} --d-sae {cfg.num_features} -k {max(1, round(l0))}",
                      highlight=False, markup=False)
