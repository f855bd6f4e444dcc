"""Ground-truth metrics: a dictionary against the known features of synthetic activations.

The metrics SAELens reports (`sae_lens.synthetic.evals.eval_sae_on_synthetic_data`, 6.54),
with its definitions, so that the two agree to rounding (tests/evals/test_ground_truth.py):

- `true_l0`, `sae_l0`: mean number of non-zero feature activations / latents per sample.
- `dead_latents`: latents that never fire (!= 0) on the samples.
- `shrinkage`: mean ‖x̂‖ / ‖x‖ over samples with ‖x‖ > 1e-6.
- `explained_variance`: 1 − E‖x − x̂‖² / (E‖x‖² − ‖E x‖²), over all samples at once.
- `mcc`: mean |cos| of the pairs of an optimal one-to-one matching (Hungarian) between decoder
  rows and true features (O'Neill et al. 2025, arXiv:2505.20254).
- `uniqueness`: distinct best-|cos| true features over latents / d_sae.
- `classification`: each latent, as a detector of its best-|cos| true feature (latent != 0 vs
  feature > 0): precision, recall, F1, accuracy per latent, averaged over all latents (an
  undefined ratio counts 0, so dead latents pull the means down).

Cosines are computed as `sae_lens.util.cosine_similarities` does, in float32 (rows divided by
their norm clamped at 1e-8), and the same float32 matrix feeds argmax and the Hungarian solver:
ties and near-ties then resolve as in SAELens.

saelab additions (not in SAELens): `recovered_at_0_9` / `recovered_at_0_7`, the true features
whose Hungarian partner has |cos| at least that; `matched`, the same four classification means
over the Hungarian pairs (each true feature judged by the one latent matched to it); and, on
request, per-latent and per-pair arrays (`GroundTruthDetail`).

Memory: counts are accumulated batch by batch; no [n_samples, ·] tensor is kept. The
[d_sae, n_features] cosine matrix is built once, as the Hungarian matching needs it whole.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..coders.base import SparseCoder
from ..errors import ConfigError
from .reconstruction import ReconstructionStats

log = logging.getLogger(__name__)

__all__ = ["Classification", "Confusion", "GroundTruthDetail", "GroundTruthResult", "decoder_feature_cosines",
           "ground_truth_metrics"]

MIN_INPUT_NORM = 1e-6
"""Samples with ‖x‖ at most this are left out of `shrinkage` (SAELens's ShrinkageCalculator)."""


@dataclass(frozen=True)
class Classification:
    """Means over detectors (latents, or matched pairs) of per-detector ratios; undefined ratios count 0."""

    precision: float
    """Mean TP / (TP + FP)."""
    recall: float
    """Mean TP / (TP + FN)."""
    f1_score: float
    """Mean harmonic mean of each detector's precision and recall."""
    accuracy: float
    """Mean (TP + TN) / n_samples."""


@dataclass(frozen=True)
class Confusion:
    """Firing counts of m detectors against their true features: int64 [m] each."""

    tp: Tensor
    """Samples where both the latent (!= 0) and the feature (> 0) fire."""
    fp: Tensor
    """The latent fires, the feature does not."""
    fn: Tensor
    """The feature fires, the latent does not."""
    tn: Tensor
    """Neither fires."""

    def ratios(self) -> dict[str, Tensor]:
        """precision, recall, f1_score, accuracy: float64 [m] each, 0 where undefined (as SAELens)."""
        tp, fp, fn, tn = (t.double() for t in (self.tp, self.fp, self.fn, self.tn))
        precision = torch.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = torch.where(tp + fn > 0, tp / (tp + fn), 0.0)
        pr = precision + recall
        f1 = torch.where(pr > 0, 2 * precision * recall / pr, 0.0)
        accuracy = (tp + tn) / (tp + fp + fn + tn).clamp(min=1e-8)
        return {"precision": precision, "recall": recall, "f1_score": f1, "accuracy": accuracy}

    def summary(self) -> Classification:
        """Means over the m detectors (all 0 when m = 0)."""
        if self.tp.numel() == 0:
            return Classification(0.0, 0.0, 0.0, 0.0)
        return Classification(**{name: float(r.mean()) for name, r in self.ratios().items()})


@dataclass(frozen=True)
class GroundTruthDetail:
    """Per-latent and per-pair arrays behind the means (saelab addition; `per_latent=True`)."""

    best_feature: Tensor
    """int64 [d_sae]: each latent's best-|cos| true feature (the one `classification` judges it by)."""
    best_cos: Tensor
    """float32 [d_sae]: that |cos|."""
    latent_counts: Confusion
    """[d_sae] counts of each latent against its best feature."""
    matched_latent: Tensor
    """int64 [P]: the latent of each Hungarian pair; P = min(d_sae, n_features), pairs sorted by feature."""
    matched_feature: Tensor
    """int64 [P]: the true feature of each pair."""
    matched_cos: Tensor
    """float32 [P]: |cos| of each pair."""
    matched_counts: Confusion
    """[P] counts of each pair's latent against its feature."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tensors become lists; counts come with their ratios."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Confusion):
                out[f.name] = {name: t.tolist() for name, t in {**vars(value), **value.ratios()}.items()}
            else:
                out[f.name] = value.tolist()
        return out


@dataclass(frozen=True)
class GroundTruthResult:
    """What `ground_truth_metrics` returns. The first fields are SAELens's `SyntheticDataEvalResult`."""

    true_l0: float
    """Mean number of non-zero true feature activations per sample."""
    sae_l0: float
    """Mean number of non-zero latents per sample."""
    dead_latents: int
    """Latents that never fired on the samples."""
    shrinkage: float
    """Mean ‖x̂‖ / ‖x‖ over samples with ‖x‖ > 1e-6 (1.0: no shrinkage)."""
    explained_variance: float
    """1 − E‖x − x̂‖² / total variance of x (R², 1.0: perfect)."""
    mcc: float
    """Mean |cos| of the Hungarian pairs of decoder rows and true features."""
    uniqueness: float
    """Distinct best-|cos| true features / d_sae (1.0: every latent tracks a different feature)."""
    classification: Classification
    """Each latent as a detector of its best-|cos| true feature, averaged over all d_sae latents."""
    n_samples: int
    """Samples evaluated (saelab addition, as are all the fields below)."""
    n_features: int
    """True features F."""
    d_sae: int
    """Latents of the dictionary."""
    recovered_at_0_9: int
    """True features whose Hungarian partner has |cos| >= 0.9."""
    recovered_at_0_7: int
    """True features whose Hungarian partner has |cos| >= 0.7."""
    matched: Classification
    """Each true feature as detected by its Hungarian partner, averaged over the P = min(d_sae, F) pairs."""
    detail: GroundTruthDetail | None = None
    """Per-latent and per-pair arrays, with `per_latent=True`; else None."""

    def saelens_dict(self) -> dict[str, Any]:
        """The metrics SAELens reports, in its `SyntheticDataEvalResult.to_dict()` layout."""
        names = ("true_l0", "sae_l0", "dead_latents", "shrinkage", "explained_variance", "mcc", "uniqueness")
        return {**{n: getattr(self, n) for n in names}, "classification": asdict(self.classification)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: SAELens's layout, then saelab's additions under `saelab`."""
        additions = {n: getattr(self, n) for n in ("n_samples", "n_features", "d_sae", "recovered_at_0_9",
                                                     "recovered_at_0_7")}
        additions["matched"] = asdict(self.matched)
        if self.detail is not None:
            additions["detail"] = self.detail.to_dict()
        return {**self.saelens_dict(), "saelab": additions}


def decoder_feature_cosines(W_dec: Tensor, feature_vectors: Tensor) -> Tensor:
    """|cos| between decoder rows W_dec [d_sae, d] and true features [F, d] -> float32 [d_sae, F].

    As `sae_lens.util.cosine_similarities`: float32, rows divided by their norm clamped at 1e-8
    (a zero row has cosine 0 with everything).
    """
    a = W_dec.detach().float()
    b = feature_vectors.detach().float().to(a.device)
    a = a / a.norm(dim=1, keepdim=True).clamp(min=1e-8)  # [d_sae, d]
    b = b / b.norm(dim=1, keepdim=True).clamp(min=1e-8)  # [F, d]
    return (a @ b.T).abs()


class _Counts:
    """Sample-side sums, accumulated batch by batch."""

    def __init__(self, best: Tensor, pair_latent: Tensor, pair_feature: Tensor) -> None:
        self.best, self.pair_latent, self.pair_feature = best, pair_latent, pair_feature
        self.n = self.true_active = self.latent_active = self.shrink_n = 0
        self.shrink_sum = 0.0
        self.fired = torch.zeros(best.numel(), dtype=torch.int64)
        self.latent_conf = torch.zeros(3, best.numel(), dtype=torch.int64)  # tp, fp, fn
        self.pair_conf = torch.zeros(3, pair_latent.numel(), dtype=torch.int64)
        self.recon = ReconstructionStats()

    def add(self, x: Tensor, feature_acts: Tensor, latents: Tensor, x_hat: Tensor) -> None:
        """x, x_hat [n, d]; feature_acts [n, F]; latents [n, d_sae], all on one device."""
        self.n += x.shape[0]
        self.true_active += int((feature_acts != 0).sum())
        fires = latents != 0  # [n, d_sae]; != 0 as SAELens, for latents of either sign
        self.latent_active += int(fires.sum())
        self.fired += fires.sum(0).cpu()
        x_norm = x.float().norm(dim=-1)  # [n]
        valid = x_norm > MIN_INPUT_NORM
        self.shrink_sum += float((x_hat.float().norm(dim=-1)[valid] / x_norm[valid]).double().sum())
        self.shrink_n += int(valid.sum())
        self.recon.update(x.cpu(), x_hat.cpu())  # its sums live on the CPU
        truth = feature_acts > 0
        self.latent_conf += _confusion(fires, truth[:, self.best])
        self.pair_conf += _confusion(fires[:, self.pair_latent], truth[:, self.pair_feature])

    def confusion(self, counts: Tensor) -> Confusion:
        tp, fp, fn = counts
        return Confusion(tp, fp, fn, self.n - tp - fp - fn)

    def explained_variance(self) -> float:
        """SAELens's ExplainedVarianceCalculator, with its rule for constant inputs."""
        total_variance = self.recon.total_variance() / self.n
        mse = self.recon.sum_sq_err / self.n
        if total_variance < 1e-10:
            return 1.0 if mse < 1e-10 else 0.0
        return 1.0 - mse / total_variance


def _confusion(pred: Tensor, truth: Tensor) -> Tensor:
    """pred, truth: bool [n, m] -> int64 [3, m] (tp, fp, fn) on the CPU."""
    return torch.stack([(pred & truth).sum(0), (pred & ~truth).sum(0), (~pred & truth).sum(0)]).cpu()


def _check_coder(coder: SparseCoder, feature_vectors: Tensor) -> None:
    if coder.cfg.kind != "sae" or coder.d_out != coder.d_in:
        raise ConfigError(f"coder: got a {coder.cfg.kind} (d_in={coder.d_in}, d_out={coder.d_out}); ground-truth "
                          "metrics need an SAE that reconstructs its own input (kind 'sae').")
    if feature_vectors.ndim != 2 or feature_vectors.shape[1] != coder.d_in:
        raise ConfigError(f"feature_vectors: got shape {list(feature_vectors.shape)}; expected [n_features, "
                          f"{coder.d_in}] (one row per true feature, in the coder's d_in={coder.d_in} dimensions).")
    if feature_vectors.shape[0] == 0:
        raise ConfigError("feature_vectors: got 0 true features; expected at least one row.")


def _check_batch(i: int, batch: Any, d_in: int, n_features: int) -> tuple[Tensor, Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(t, Tensor) for t in batch)):
        raise ConfigError(f"batches[{i}]: got {type(batch).__name__}; expected a pair of tensors "
                          f"(hidden [n, {d_in}], feature_acts [n, {n_features}]).")
    hidden, feature_acts = batch
    n = hidden.shape[0] if hidden.ndim == 2 else -1
    if hidden.ndim != 2 or hidden.shape[1] != d_in or tuple(feature_acts.shape) != (n, n_features):
        raise ConfigError(f"batches[{i}]: got hidden {list(hidden.shape)} and feature_acts "
                          f"{list(feature_acts.shape)}; expected [n, {d_in}] and [n, {n_features}] with the same n "
                          "(d_in of the coder, one column per row of feature_vectors).")
    return hidden, (feature_acts.to_dense() if feature_acts.is_sparse else feature_acts)


def _hungarian(cos: Tensor) -> tuple[Tensor, Tensor]:
    """Optimal one-to-one pairs of |cos| [d_sae, F], as SAELens's mean_correlation_coefficient finds them.

    -> (latents [P], features [P]), sorted by feature.
    """
    rows, cols = linear_sum_assignment(1 - cos.cpu().numpy())  # float32 cost, as SAELens
    order = np.argsort(cols, kind="stable")
    return torch.from_numpy(rows[order]).long(), torch.from_numpy(cols[order]).long()


@torch.no_grad()
def ground_truth_metrics(coder: SparseCoder, feature_vectors: Tensor, batches: Iterable[tuple[Tensor, Tensor]], *,
                         per_latent: bool = False) -> GroundTruthResult:
    """Score a dictionary against the true features of synthetic activations.

    Args:
        coder: an SAE (kind "sae"); it encodes as at inference (TopK per sample, BatchTopK and
            Matryoshka with their global threshold, JumpReLU with its thresholds).
        feature_vectors: float [F, d_in], the true feature directions (one per row).
        batches: pairs (hidden [n, d_in], feature_acts [n, F]), hidden the activations the
            features make (bias included); feature_acts may be sparse COO. Consumed once.
        per_latent: also return the per-latent and per-pair arrays (`result.detail`).

    Example:
        >>> batches = [model.sample(4096, generator=g) for _ in range(25)]   # 100K samples
        >>> r = ground_truth_metrics(coder, model.feature_vectors, batches)
        >>> r.mcc, r.classification.f1_score, r.recovered_at_0_9
    """
    _check_coder(coder, feature_vectors)
    n_features = feature_vectors.shape[0]
    cos = decoder_feature_cosines(coder.W_dec, feature_vectors.to(coder.device))  # [d_sae, F]
    best = cos.argmax(dim=1)  # [d_sae]
    best_cos = cos.gather(1, best[:, None])[:, 0]  # [d_sae]
    log.info("matching %d latents to %d true features (Hungarian)", coder.d_sae, n_features)
    pair_latent, pair_feature = _hungarian(cos)
    pair_cos = cos[pair_latent.to(cos.device), pair_feature.to(cos.device)].cpu()  # [P]
    counts = _Counts(best, pair_latent.to(coder.device), pair_feature.to(coder.device))
    for i, batch in enumerate(batches):
        hidden, feature_acts = _check_batch(i, batch, coder.d_in, n_features)
        hidden, feature_acts = hidden.to(coder.device), feature_acts.to(coder.device)
        latents = coder.encode(hidden)  # [n, d_sae]
        counts.add(hidden, feature_acts, latents, coder.decode(latents, x=hidden))
    if counts.n == 0:
        raise ConfigError("batches: got no samples; expected at least one (hidden, feature_acts) pair with n > 0.")
    latent_conf, pair_conf = counts.confusion(counts.latent_conf), counts.confusion(counts.pair_conf)
    detail = None
    if per_latent:
        detail = GroundTruthDetail(best.cpu(), best_cos.cpu(), latent_conf, pair_latent, pair_feature, pair_cos,
                                   pair_conf)
    return GroundTruthResult(
        true_l0=counts.true_active / counts.n, sae_l0=counts.latent_active / counts.n,
        dead_latents=int((counts.fired == 0).sum()),
        shrinkage=counts.shrink_sum / counts.shrink_n if counts.shrink_n else 0.0,
        explained_variance=counts.explained_variance(),
        mcc=float(pair_cos.double().mean()), uniqueness=best.unique().numel() / coder.d_sae,
        classification=latent_conf.summary(),
        n_samples=counts.n, n_features=n_features, d_sae=coder.d_sae,
        recovered_at_0_9=int((pair_cos >= 0.9).sum()), recovered_at_0_7=int((pair_cos >= 0.7).sum()),
        matched=pair_conf.summary(), detail=detail)
