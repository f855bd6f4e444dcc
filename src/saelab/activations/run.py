"""The `activations` stage: stream activations over the workspace's windows; statistics."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from .._io import write_cfg, write_json
from ..data.tokens import TokenWindows
from ..errors import ConfigError
from ..models.hookpoints import resolve_hookpoint
from ..models.load import LoadedModel
from ..workspace import Workspace
from .stats import ActivationStats
from .stream import StreamConfig, stream_activations


@dataclass(frozen=True)
class ActivationsConfig:
    """Which activations to read, and how."""

    hookpoints: tuple[str, ...] = ("resid_post.6",)
    """Hookpoint names or aliases; one forward pass serves all of them."""
    batch_size: int = 8
    """Windows per forward pass."""
    n_windows: int | None = None
    """Read only the first N windows (None: all)."""


def run(config: ActivationsConfig, workspace: Workspace, lm: LoadedModel, windows: TokenWindows,
        progress: bool = True) -> dict[str, Any]:
    """Stream activations at every hookpoint; write and return per-hookpoint statistics.

    Returns {"hookpoints": {name: stats}, "tokens_per_second": float, ...}; the same goes
    to `workspace/activations/stats.json` with a cfg.json beside it.
    """
    if not config.hookpoints:
        raise ConfigError("hookpoints: got none; give at least one, e.g. resid_post.6.")
    resolved = [resolve_hookpoint(lm.model, h) for h in config.hookpoints]
    stream_cfg = StreamConfig(batch_size=config.batch_size, stop=config.n_windows)
    stats: dict[str, ActivationStats] = {hp.name: ActivationStats(lm.d_model) for hp in resolved}
    t0, n_tok = time.perf_counter(), 0
    for batch in stream_activations(lm, windows, resolved, stream_cfg, progress=progress):
        for name, acts in batch.acts.items():
            if stats[name].d != acts.shape[-1]:  # e.g. an MLP's inner width
                stats[name] = ActivationStats(acts.shape[-1])
            stats[name].update(acts, batch.mask)
        n_tok += batch.tokens.numel()
    seconds = time.perf_counter() - t0
    result = {
        "hookpoints": {name: s.summary() for name, s in stats.items()},
        "aliases": {hp.name: user for hp, user in zip(resolved, config.hookpoints)},
        "n_windows": n_tok // windows.ctx_len,
        "n_tokens_read": n_tok,
        "seconds": seconds,
        "tokens_per_second": n_tok / seconds if seconds else float("nan"),
        "excluded": list(windows.config.exclude),
    }
    write_json(workspace.activations / "stats.json", result)
    write_cfg(workspace.activations, {"artifact": "activations", **asdict(config), "model": lm.describe(),
                                      "tokens_hash": windows.tokens_hash})
    for name, s in result["hookpoints"].items():
        if s["n_nonfinite_tokens"]:
            raise ConfigError(f"{s['n_nonfinite_tokens']} tokens have NaN/inf activations at {name}: "
                              "try dtype float32 (bf16/fp16 can overflow).")
    return result
