"""Find and read diff runs on disk (what the workspace report and the diff report read).

A diff run is a directory holding `cfg.json` with `"artifact": "diff_run"` (runs made before the
rename hold the same JSON as `run_config.json`). Its parts: `activations/tokens/` (the paired
windows), `activations/sweep/sweep.json`, `features/layer_LL/` (latent table, latent store
`latents/`, naming, examples), `visualizations/`, `reports/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._io import CFG_NAME, read_json
from ..errors import ArtifactError

ARTIFACT = "diff_run"
OLD_CFG_NAME = "run_config.json"
"""Where runs written before the rename to cfg.json keep their settings (same content)."""


def run_config_path(run_dir: str | Path) -> Path | None:
    """`run_dir/cfg.json`, else the old `run_dir/run_config.json`; None when neither exists."""
    d = Path(run_dir)
    return next((p for p in (d / CFG_NAME, d / OLD_CFG_NAME) if p.is_file()), None)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's settings (layers, models, data counts, naming); an error that says what is missing."""
    path = run_config_path(run_dir)
    if path is None:
        raise ArtifactError(f"{run_dir}: no {CFG_NAME} (nor the older {OLD_CFG_NAME}); is it the --output-dir of "
                            "`saelab diff`? A run writes it once its paired activations exist.")
    return read_json(path)


def is_diff_run(path: str | Path) -> bool:
    """A directory whose cfg.json (or run_config.json) says `"artifact": "diff_run"`."""
    found = run_config_path(path)
    if found is None:
        return False
    try:
        return read_json(found).get("artifact") == ARTIFACT
    except (ValueError, AttributeError):  # not JSON, or not an object: some other tool's file
        return False


def find_diff_runs(root: str | Path) -> list[Path]:
    """The diff runs of a workspace: `root/diff/*/` directories that are diff runs, by name.

    Example:
        >>> find_diff_runs("saelab-workspace")      # the demo writes saelab-workspace/diff/run
        [PosixPath('saelab-workspace/diff/run')]
    """
    return sorted(p for p in (Path(root) / "diff").glob("*") if p.is_dir() and is_diff_run(p))


def layer_dir(run_dir: str | Path, layer: int) -> Path:
    """`features/layer_LL/`: the crosscoder, latent table, latent store and names of one layer."""
    return Path(run_dir) / "features" / f"layer_{layer:02d}"


def windows_dir(run_dir: str | Path) -> Path:
    """`activations/tokens/`: the paired token windows the latent stores index."""
    return Path(run_dir) / "activations" / "tokens"
