"""`make_synth_model`: build a model from a `SynthConfig`, making the random choices SAELens's `SyntheticModel`
makes for the same seed.

Seeds (SAELens's offsets): base firing probabilities `seed`, std magnitudes `seed + 1`, mean magnitudes
`seed + 2`, hierarchy `seed + 3` (Python's `random.Random`), correlation factor `seed + 4`, feature vectors and
bias `seed`. With the same torch calls in the same order, everything but the orthogonalised feature vectors
comes out bit for bit as SAELens's; orthogonalisation runs the same Adam optimisation with an analytic
gradient (SAELens differentiates a chunked loss with autograd), so its vectors agree to rounding.

`seed=None`: where SAELens uses an unseeded `torch.Generator()` (random probabilities, correlation) saelab does
too (torch's fixed default seed); where SAELens draws from torch's global RNG (feature vectors, folded-normal
magnitudes) saelab draws from fresh entropy and never touches the global RNG.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from .config import OrthogonalizationConfig, SynthConfig
from .hierarchy import Hierarchy, generate_hierarchy
from .model import SynthModel
from .profiles import magnitudes

logger = logging.getLogger(__name__)

_MIN_DIAG = 0.01  # SAELens: a factor row may explain at most 99% of a feature's latent variance


def make_synth_model(cfg: SynthConfig, device: str | torch.device = "cpu") -> SynthModel:
    """A new synthetic model for `cfg`, deterministic given `cfg.seed`.

    `device` is where orthogonalisation runs (the only heavy step: ~4 * num_features^2 * hidden_dim flops per
    step); the model comes back on CPU. Example: `m = make_synth_model(SynthConfig(4096, 256, seed=0))`.
    """
    seed = cfg.seed
    hierarchy = None
    if cfg.hierarchy is not None:
        hierarchy = generate_hierarchy(cfg.num_features, cfg.hierarchy, None if seed is None else seed + 3)
    factor = diag = None
    if cfg.correlation is not None:
        factor, diag = low_rank_correlation(cfg.num_features, cfg.correlation.rank,
                                            cfg.correlation.correlation_scale, None if seed is None else seed + 4)
    vectors, bias = feature_vectors(cfg, device)
    return SynthModel(
        cfg=cfg, feature_vectors=vectors, bias=bias, firing_probabilities=firing_probabilities(cfg, hierarchy),
        mean_firing_magnitudes=magnitudes(cfg.num_features, cfg.mean_firing_magnitudes, _offset(seed, 2)),
        std_firing_magnitudes=magnitudes(cfg.num_features, cfg.std_firing_magnitudes, _offset(seed, 1)),
        hierarchy=hierarchy, correlation_factor=factor, correlation_diag=diag)


def _offset(seed: int | None, k: int) -> int | None:
    return None if seed is None else seed + k


def firing_probabilities(cfg: SynthConfig, hierarchy: Hierarchy | None) -> Tensor:
    """float32 [num_features]: the base probabilities, compensated for the hierarchy when asked (clamped at 1)."""
    probs = cfg.firing_probability.generate(cfg.num_features, cfg.seed)
    if hierarchy is None or cfg.hierarchy is None or not cfg.hierarchy.compensate_probabilities:
        return probs
    corrected = probs * hierarchy.correction_factors(probs)
    clamped = int(((corrected >= 1.0) & (probs < 1.0)).sum())
    if clamped:
        logger.warning("hierarchy compensation clamped %d firing probabilities at 1 (largest before clamping: "
                       "%.3f); lower base probabilities avoid this.", clamped, corrected.max().item())
    return corrected.clamp(max=1.0)


def low_rank_correlation(num_features: int, rank: int, scale: float, seed: int | None) -> tuple[Tensor, Tensor]:
    """(factor [num_features, rank], diag [num_features]) with factor @ factor.T + diag(diag) a correlation
    matrix (unit diagonal): N(0, scale^2) entries, rows with squared norm > 0.99 scaled down to 0.99."""
    gen = torch.Generator()
    if seed is not None:
        gen.manual_seed(seed)
    factor = torch.randn(num_features, rank, generator=gen) * scale
    sq = (factor**2).sum(dim=1)
    capped = (1 - sq) < _MIN_DIAG
    factor[capped, :] *= torch.sqrt((1 - _MIN_DIAG) / sq[capped].unsqueeze(1))
    if capped.any():
        logger.warning("%d / %d correlation factor rows were capped; a lower rank or correlation_scale avoids this.",
                       int(capped.sum()), num_features)
    return factor, 1 - (factor**2).sum(dim=1)


def feature_vectors(cfg: SynthConfig, device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
    """(unit feature vectors [num_features, hidden_dim], bias [hidden_dim]), drawn from one generator seeded with
    `cfg.seed` (vectors first), then orthogonalised when `cfg.orthogonalization` asks."""
    gen = torch.Generator()
    if cfg.seed is not None:
        gen.manual_seed(cfg.seed)
    else:
        gen.seed()
    vectors = torch.randn(cfg.num_features, cfg.hidden_dim, generator=gen)
    vectors = vectors / vectors.norm(p=2, dim=1, keepdim=True).clamp(min=1e-8)
    bias = torch.zeros(cfg.hidden_dim)
    if cfg.bias:
        norm = 1.0 if cfg.bias is True else float(cfg.bias)
        bias = torch.randn(cfg.hidden_dim, generator=gen)
        bias = bias / bias.norm().clamp(min=1e-8) * norm
    if cfg.orthogonalization is not None:
        vectors = orthogonalize(vectors, cfg.orthogonalization, device)
    return vectors, bias


def orthogonalize(vectors: Tensor, cfg: OrthogonalizationConfig, device: str | torch.device = "cpu") -> Tensor:
    """Unit rows [n, d] pushed apart by Adam on L = sum_{i != j} G_ij^2 + n * sum_i (G_ii - 1)^2, G = V V^T.

    dL/dv_k = 4 ((G V)_k - G_kk v_k + n (G_kk - 1) v_k), computed `cfg.chunk_size` rows at a time."""
    n = vectors.shape[0]
    param = (vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-8)).to(device).requires_grad_(True)
    opt = torch.optim.Adam([param], lr=cfg.lr)
    for step in range(cfg.num_steps):
        with torch.no_grad():
            v = param.detach()
            grad = torch.empty_like(v)
            for start in range(0, n, cfg.chunk_size):
                rows = v[start : start + cfg.chunk_size]  # [c, d]
                gram = rows @ v.T  # [c, n]
                own = gram[:, start : start + len(rows)].diagonal()  # [c] = |v_k|^2
                grad[start : start + len(rows)] = 4 * (gram @ v + (n * (own - 1) - own).unsqueeze(1) * rows)
        param.grad = grad
        opt.step()
        if step % 50 == 0:
            logger.debug("orthogonalize: step %d / %d", step, cfg.num_steps)
    with torch.no_grad():
        out = param.detach()
        return (out / out.norm(dim=1, keepdim=True).clamp(min=1e-8)).cpu()

