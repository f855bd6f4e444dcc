"""The features stage of a diff: a crosscoder's latents over the paired activations, and its latent table.

For one layer:
- `encode_latents`: encode every paired activation with the crosscoder and write a latent
  store (`saelab.latents.write_store`) over the paired windows, so interp examples and
  top-token descriptions read it like any other store; FVU per model on the held-out windows
  is measured in the same pass.
- `latent_table`: per latent Δnorm, tag, decoder cosine, decoder change, firing frequency
  (overall and per group), latent-scaling ν_ε / ν_r and the artifact flag for the exclusive
  latents (DESIGN.md §5, Minder et al. 2025).
- `top_examples`: the strongest windows of some latents, decoded to pieces for the report.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..activations.paired import PairedActivations
from ..coders import SparseCoder
from ..latents import LatentStore, write_store
from ..latents.manifest import dictionary_hash

log = logging.getLogger(__name__)
SCALING_LIMIT = 0.3
"""ν_ε and ν_r below this: a genuinely exclusive latent (Minder et al. 2025)."""


def heldout_windows(acts: PairedActivations, fraction: float) -> tuple[int, int]:
    """[lo, hi): the last `fraction` of the corpus windows, never trained on (FVU is measured there)."""
    n_corpus = int(acts.windows().cfg.get("n_corpus_windows", acts.cfg["n_windows"]))
    n_held = int(round(n_corpus * fraction))
    return n_corpus - n_held, n_corpus


class _FVU:
    """Streaming FVU per source: Σ‖x − x̂‖² / Σ‖x − μ‖², with Σ‖x − μ‖² = Σ‖x‖² − n‖μ‖² (float64)."""

    def __init__(self, n_sources: int, d: int) -> None:
        self.err = np.zeros(n_sources)
        self.sq = np.zeros(n_sources)
        self.sum = np.zeros((n_sources, d))
        self.n = 0

    def add(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        """x, x_hat: [n, s, d]."""
        x64 = x.double()
        self.err += ((x64 - x_hat.double()) ** 2).sum((0, 2)).numpy()
        self.sq += (x64**2).sum((0, 2)).numpy()
        self.sum += x64.sum(0).numpy()
        self.n += x.shape[0]

    def result(self) -> list[float]:
        if not self.n:
            return [float("nan")] * len(self.err)
        total = self.sq - (self.sum**2).sum(1) / self.n
        return [float(e / t) if t > 0 else float("nan") for e, t in zip(self.err, total)]


def encode_latents(acts: PairedActivations, coder: SparseCoder, layer: int, out_dir: str | Path, *,
                   heldout: tuple[int, int], batch_size: int = 2048) -> tuple[LatentStore, dict[str, Any]]:
    """Write the crosscoder's latent store at `out_dir`; return it and the held-out FVU per model.

    Example:
        >>> store, fvu = encode_latents(acts, coder, 6, "diff/features/layer_06/latents", heldout=(90, 100))
        >>> fvu["base"], fvu["target"], store.frequencies().per_token.shape
    """
    windows = acts.windows()
    fvu = _FVU(2, coder.d_in)
    lo, hi = heldout

    def encoded() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        for b in acts.batches_with_meta(layer, batch_size):
            with torch.inference_mode():
                z = coder.encode(b.acts.to(coder.device))  # [n, d_sae]
                held = torch.from_numpy((b.window >= lo) & (b.window < hi))
                if held.any():
                    fvu.add(b.acts[held], coder.decode(z[held.to(z.device)]).float().cpu())  # [n, 2, d]
            yield torch.from_numpy(np.stack([b.window, b.pos], 1)), z.float().cpu()

    path = Path(out_dir)
    complete = (path / "cfg.json").exists() and (path / "fvu.json").exists()
    store_path = write_store(path, encoded(), tokens_hash=windows.tokens_hash, n_windows=windows.n_windows,
                             ctx_len=windows.ctx_len, d_sae=coder.d_sae, d_in=coder.d_in,
                             hookpoint=coder.cfg.hookpoint, dictionary=f"crosscoder_layer_{layer:02d}",
                             dictionary_hash=dictionary_hash(coder),
                             model={"base": acts.cfg["base"]["path"], "target": acts.cfg["target"]["path"]},
                             excluded=list(acts.cfg["excluded"]), shard_windows=int(acts.cfg["shard_windows"]))
    from .._io import read_json, write_json

    if fvu.n or not complete:
        base, target = fvu.result()
        write_json(path / "fvu.json", {"base": base, "target": target, "n_tokens": fvu.n, "split": "held-out",
                                       "windows": [lo, hi]})
    return LatentStore(store_path), read_json(path / "fvu.json")


def decoder_change(coder: SparseCoder) -> np.ndarray:
    """float [d_sae]: ‖d_target − d_base‖ / max(‖d_base‖, ‖d_target‖) of each latent's two decoder rows
    (in each model's normalised units, as Δnorm): 0 when both models use the latent alike, 1 or more when
    one model does not use it or uses it in another direction."""
    from .latent_stats import activation_scales

    w = coder.W_dec.detach().float().cpu() / activation_scales(coder)[None, :, None]  # [d_sae, 2, d], normalised
    base, target = w[:, 0], w[:, 1]
    top = torch.maximum(base.norm(dim=-1), target.norm(dim=-1)).clamp_min(1e-12)
    return ((target - base).norm(dim=-1) / top).cpu().numpy()


def train_or_resume(batches: Any, config: Any, acts: PairedActivations, layer: int, out_dir: Path,
                    hookpoint: str, progress: bool = True, resume: bool = True,
                    heldout: torch.Tensor | None = None) -> tuple[SparseCoder, str]:
    """(the crosscoder of `layer`, "resumed" if a finished one with this config was on disk else "ran")."""
    from ..train.crosscoder import finished_crosscoder, train_crosscoder

    if resume and (done := finished_crosscoder(out_dir, config, d_in=acts.d_model, hookpoint=hookpoint)):
        return done, "resumed"
    model = f"{acts.cfg['base']['path']} | {acts.cfg['target']['path']}"
    coder = train_crosscoder(batches, config, d_in=acts.d_model, hookpoint=hookpoint, out_dir=out_dir, resume=resume,
                             progress=progress, model=model, heldout=heldout)
    return coder, "ran"


def heldout_rows(acts: PairedActivations, layer: int, held: tuple[int, int], limit: int = 8192) -> torch.Tensor | None:
    """Up to `limit` paired activations [n, 2, d] of the held-out windows [lo, hi) at `layer` (None: none), for
    the crosscoder's held-out FVU while it trains."""
    rows, n = [], 0
    for b in acts.batches_with_meta(layer, 4096):
        keep = torch.from_numpy((b.window >= held[0]) & (b.window < held[1]))
        if keep.any():
            rows.append(b.acts[keep])
            n += int(keep.sum())
        if n >= limit:
            break
    return torch.cat(rows)[:limit] if rows else None

