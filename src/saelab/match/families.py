"""Families: a narrow latent whose direction a few wide latents rebuild (non-negative least
squares on decoder rows), and whose activation is close to the union of theirs.

Feature splitting (Bricken et al. 2023, "Towards Monosemanticity"; Chanin et al. 2024 on
absorption) makes a wide dictionary cut one narrow latent into children that fire on disjoint
sub-cases: their directions sum back to the parent and they rarely fire together.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.optimize import nnls

from ..latents.store import LatentStore
from .similarity import aligned_shards


@dataclass
class Family:
    """A narrow latent and the wide latents that rebuild it."""

    parent: int
    """latent of the narrow dictionary"""
    members: list[int]
    """latents of the wide dictionary, largest NNLS weight first"""
    weights: list[float]
    """NNLS weights w ≥ 0 with d_parent ≈ Σ w_j d_j (unit decoder rows)"""
    member_cosines: list[float]
    """cosine of each member's decoder row with the parent's"""
    recon_cosine: float
    """cosine of Σ w_j d_j with d_parent"""
    best_single_cosine: float
    """the largest cosine of any one wide latent with d_parent"""
    activation: dict = field(default_factory=dict)
    """union_jaccard (parent fires ⇔ some member fires), cofire_fraction (of member firings,
    the share where ≥ 2 members fire), union_correlation (r of the parent with Σ members),
    confirmed (both within the config's bounds); empty when no activations were compared"""

    def to_dict(self) -> dict:
        return asdict(self)


def _fit(target: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, float]:
    """NNLS weights [n] for target [d] ≈ candidatesᵀ w, and the cosine of the fit with target."""
    w, _ = nnls(candidates.T.astype(np.float64), target.astype(np.float64))  # candidates [n, d]
    fit = w @ candidates
    norm = np.linalg.norm(fit)
    return w, float(fit @ target / (norm * np.linalg.norm(target))) if norm > 0 else 0.0


def find_families(narrow: np.ndarray, wide: np.ndarray, cos: np.ndarray, n_candidates: int = 8,
                  min_weight: float = 0.1, min_recon: float = 0.9, min_gain: float = 0.05) -> list[Family]:
    """Narrow latents rebuilt by ≥ 2 wide latents markedly better than by their best single one.

    Args:
        narrow: float32 [n_narrow, d] unit decoder rows; wide: float32 [n_wide, d] unit rows.
        cos: float32 [n_narrow, n_wide] cosines of the two (or use `families_from_candidates`
            with each narrow latent's top cosines, as `match` does above its dense limit).
        n_candidates: wide latents (highest cosine) offered to NNLS per narrow latent.
        min_weight: members keep NNLS weight ≥ this fraction of the largest weight.
        min_recon: the family's rebuilt direction must reach this cosine with the parent.
        min_gain: ... and beat the best single wide latent's cosine by this much.
    """
    k = min(n_candidates, wide.shape[0])
    if k < 2:
        return []
    top = np.argpartition(-cos, k - 1, axis=1)[:, :k]  # [n_narrow, k]
    return families_from_candidates(narrow, wide, top, np.take_along_axis(cos, top, axis=1), cos.max(axis=1),
                                    min_weight, min_recon, min_gain)


def families_from_candidates(narrow: np.ndarray, wide: np.ndarray, cand: np.ndarray, cand_cos: np.ndarray,
                             best: np.ndarray, min_weight: float = 0.1, min_recon: float = 0.9,
                             min_gain: float = 0.05) -> list[Family]:
    """`find_families` from each narrow latent's candidates: cand int [n_narrow, k] wide latents,
    cand_cos float32 [n_narrow, k] their cosines, best float32 [n_narrow] the largest cosine."""
    if cand.shape[1] < 2:
        return []
    families = []
    for parent in range(narrow.shape[0]):
        pos = cand_cos[parent] > 0
        c, c_cos = cand[parent][pos], cand_cos[parent][pos]
        if c.size < 2:
            continue
        w, _ = _fit(narrow[parent], wide[c])
        kept = w >= min_weight * w.max() if w.max() > 0 else np.zeros(c.size, bool)
        members, m_cos = c[kept], c_cos[kept]
        if members.size < 2:
            continue
        w, recon = _fit(narrow[parent], wide[members])  # refit on the kept members only
        if recon < min_recon or recon - float(best[parent]) < min_gain:
            continue
        order = np.argsort(-w)
        families.append(Family(parent, members[order].tolist(), w[order].round(4).tolist(),
                               m_cos[order].round(4).tolist(), round(recon, 4), round(float(best[parent]), 4)))
    return families


def family_activation_stats(families: list[Family], narrow: LatentStore, wide: LatentStore, narrow_first: bool,
                            min_union_jaccard: float = 0.3, max_cofire: float = 0.3) -> None:
    """Fill `Family.activation` from one pass over both stores (in place); `confirmed` when the
    parent's firing ≈ the members' union (Jaccard ≥ min_union_jaccard) and members rarely co-fire.

    narrow_first: the stores are (a, b) = (narrow, wide) in `aligned_shards` order, else (wide, narrow).
    """
    if not families:
        return
    n_fam = len(families)
    member_rows = np.concatenate([f.members for f in families])
    member_fam = np.repeat(np.arange(n_fam), [len(f.members) for f in families])
    M = sp.csr_matrix((np.ones(member_rows.size, np.float32), (member_rows, member_fam)),
                      shape=(wide.d_sae, n_fam))  # [d_wide, n_fam] membership
    parents = np.array([f.parent for f in families])
    acc = {k: np.zeros(n_fam) for k in ("both", "either", "multi", "any", "sp", "su", "spp", "suu", "spu")}
    pairs = aligned_shards(narrow, wide) if narrow_first else ((x, y) for y, x in aligned_shards(wide, narrow))
    step = min(16384, max(256, (1 << 22) // n_fam))  # rows · n_fam ≤ 4M floats per dense array
    chunks = ((xn[lo : lo + step], xw[lo : lo + step]) for xn, xw in pairs for lo in range(0, xn.shape[0], step))
    for xn, xw in chunks:  # [rows, d_narrow], [rows, d_wide]; row chunks bound the dense [rows, n_fam]
        p = xn[:, parents].toarray()  # [rows, n_fam] parent activations
        u = (xw @ M).toarray()  # [rows, n_fam] summed member activations
        n_firing = ((xw > 0).astype(np.float32) @ M).toarray()  # members firing per row
        fires_p, fires_u = p > 0, n_firing > 0
        acc["both"] += (fires_p & fires_u).sum(0)
        acc["either"] += (fires_p | fires_u).sum(0)
        acc["multi"] += (n_firing >= 2).sum(0)
        acc["any"] += fires_u.sum(0)
        for key, v in (("sp", p), ("su", u), ("spp", p * p), ("suu", u * u), ("spu", p * u)):
            acc[key] += v.sum(0, dtype=np.float64)
    n = float(narrow.n_tokens)
    cov = n * acc["spu"] - acc["sp"] * acc["su"]
    var = np.sqrt(np.maximum(n * acc["spp"] - acc["sp"] ** 2, 0) * np.maximum(n * acc["suu"] - acc["su"] ** 2, 0))
    for i, f in enumerate(families):
        f.activation = {"union_jaccard": round(float(acc["both"][i] / max(acc["either"][i], 1)), 4),
                        "cofire_fraction": round(float(acc["multi"][i] / max(acc["any"][i], 1)), 4),
                        "union_correlation": round(float(cov[i] / var[i]), 4) if var[i] > 0 else 0.0}
        f.activation["confirmed"] = bool(f.activation["union_jaccard"] >= min_union_jaccard
                                         and f.activation["cofire_fraction"] <= max_cofire)
