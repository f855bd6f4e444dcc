"""The whole-dictionary analysis: all-pairs scores → one-to-one and many-to-one matches, the
coverage curve against a random baseline, families, and a class for every latent.

Up to `MatchConfig.dense_limit` entries the scores are one dense [n_a, n_b] matrix and every
step is exact. Above it they are a `TopK` (each latent's `candidates` best partners, blockwise):
many-to-one partners, families and classes are the same as from the dense matrix (families
need only each narrow latent's top `family_candidates` ≤ `candidates`); the one-to-one
assignment and the random baseline's are solved on the candidate graph (assignment.py says
where that can differ). Measured peak RSS of `saelab match` at 131,072 × 16,384, d = 2,304,
decoder cosine and activation correlation on small stores (bench/scale.py): 5.18 GB. The match
holds the 131,072-latent coder's fp32 weights (2.4 GB, loaded once), the unit decoder rows of both sides
(1.4 GB), one [block, n_b] float32 product (0.27 GB at block 4,096) and the candidates (≈ 0.1 GB).
A dense matrix would be 8.6 GB, twice (scores and baseline), and linear_sum_assignment copies it to
float64 (17 GB).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ConfigError
from .assignment import ManyToOne, OneToOne, assign, chance_level, coverage_curve, many_to_one, random_rotation
from .config import MatchConfig
from .families import Family, families_from_candidates, family_activation_stats, find_families
from .index import MatchIndex
from .similarity import correlation_scores, cosine_best, cosine_matrix, cosine_topk, pair_cosines
from .topk import TopK

log = logging.getLogger(__name__)

NARROW_CLASSES = ("matched", "family parent", "unique")
WIDE_CLASSES = ("identical", "split child", "related", "novel")


@dataclass
class MatchAnalysis:
    """What `analyse` finds. Rows of every [n_a, n_b] matrix are latents of A."""

    primary: str
    """the signal that decides matches: decoder_cosine (same hookpoint) or activation_correlation"""
    score: np.ndarray | TopK
    """float32 [n_a, n_b]: the primary signal for every pair; above `MatchConfig.dense_limit` each
    latent's top candidates instead"""
    one_to_one: OneToOne
    best: ManyToOne
    null_scores: np.ndarray
    """float32 [n_pairs]: one-to-one scores of the random baseline"""
    baseline: str
    """how the baseline was made (rotated decoders or shuffled windows)"""
    chance: float
    """score the baseline reaches at config.chance_quantile"""
    match_threshold: float
    """max(config.same_threshold, chance): a one-to-one pair at or above it is a match"""
    narrow: str
    """"a" or "b": the dictionary with fewer latents (a on ties); families' parents live there"""
    families: list[Family]
    family_note: str
    """why the family search found nothing or did not run ('' when it found families)"""
    classes_a: np.ndarray
    """object [n_a]: class of each latent of A (NARROW_CLASSES or WIDE_CLASSES)"""
    classes_b: np.ndarray
    encoder_agreement: float | None = None
    """fraction of A's latents whose best B partner is the same by encoder and by decoder cosine"""
    timings: dict[str, float] = field(default_factory=dict)


def decoder_scores(dec_a: np.ndarray, dec_b: np.ndarray, config: MatchConfig) -> np.ndarray | TopK:
    """Cosines of two sets of unit rows: dense up to the dense limit, else each row's and column's top k."""
    if config.is_dense(dec_a.shape[0], dec_b.shape[0]):
        return cosine_matrix(dec_a, dec_b, config.block_size)
    return cosine_topk(dec_a, dec_b, config.candidates, config.block_size)


def _primary(index: MatchIndex, config: MatchConfig) -> tuple[str, np.ndarray | TopK]:
    if not config.is_dense(index.a.d_sae, index.b.d_sae) and config.assignment != "hungarian":
        raise ConfigError(f"MatchConfig.assignment: got {config.assignment!r} for {index.a.d_sae:,} × "
                          f"{index.b.d_sae:,} latents, above dense_limit {config.dense_limit:,}; sinkhorn needs the "
                          "dense matrix: use 'hungarian' (on the candidate graph), or raise dense_limit.")
    if index.dec_a is not None:
        return "decoder_cosine", decoder_scores(index.dec_a, index.dec_b, config)
    assert index.correlation is not None
    corr = index.correlation
    return "activation_correlation", corr if isinstance(corr, TopK) else np.asarray(corr, np.float32)


def _baseline(index: MatchIndex, primary: str, config: MatchConfig) -> tuple[str, np.ndarray]:
    """One-to-one scores when the pairing is random: rotated decoders, or shuffled windows."""
    if primary == "decoder_cosine":
        q = random_rotation(index.dec_b.shape[1], config.seed)  # [d, d]
        rotated = (torch.from_numpy(index.dec_b) @ torch.from_numpy(q)).numpy()  # [n_b, d]
        null = decoder_scores(index.dec_a, rotated, config)
        how = "decoder rows of B rotated by a random orthogonal matrix"
    else:
        null = correlation_scores(index.a.store, index.b.store, config, shuffle_seed=config.seed)
        how = "windows of B shuffled within each shard (firing rates kept, token alignment broken)"
    return how, assign(null, config.assignment).score


def decoder_families(narrow: np.ndarray, wide: np.ndarray, cos: np.ndarray | TopK,
                     config: MatchConfig) -> list[Family]:
    """`find_families` from the cosines of narrow [n_narrow, d] with wide [n_wide, d] unit rows: a dense
    [n_narrow, n_wide] matrix, or a `TopK` whose rows are the narrow latents (their top candidates suffice)."""
    args = (config.family_min_weight, config.family_min_recon, config.family_min_gain)
    if isinstance(cos, TopK):
        k = min(config.family_candidates, cos.row_idx.shape[1])
        return families_from_candidates(narrow, wide, cos.row_idx[:, :k], cos.row_val[:, :k], cos.row_val[:, 0], *args)
    return find_families(narrow, wide, cos, config.family_candidates, *args)


def _families(index: MatchIndex, score: np.ndarray | TopK, narrow: str,
              config: MatchConfig) -> tuple[list[Family], str]:
    if index.dec_a is None:
        return [], "no family search: " + index.reasons.get("decoder_cosine", "decoder cosine does not apply")
    nar, wide = (index.dec_a, index.dec_b) if narrow == "a" else (index.dec_b, index.dec_a)
    fams = decoder_families(nar, wide, score if narrow == "a" else score.T, config)
    if not fams:
        return [], (f"no narrow latent is rebuilt by ≥ 2 wide latents with cosine ≥ {config.family_min_recon} "
                    f"and a gain ≥ {config.family_min_gain} over its best single partner")
    sides = (index.a, index.b) if narrow == "a" else (index.b, index.a)
    if "activation_correlation" not in index.reasons:
        family_activation_stats(fams, sides[0].store, sides[1].store, narrow == "a",
                                config.family_min_union_jaccard, config.family_max_cofire)
    return fams, ""


def _classes(analysis_pairs: OneToOne, best: ManyToOne, families: list[Family], narrow: str, n_a: int, n_b: int,
             threshold: float, novel: float) -> tuple[np.ndarray, np.ndarray]:
    """Narrow latents: family parent > matched > unique. Wide: split child > identical > related | novel."""
    n_narrow, n_wide = (n_a, n_b) if narrow == "a" else (n_b, n_a)
    pair_n, pair_w = ((analysis_pairs.a, analysis_pairs.b) if narrow == "a" else (analysis_pairs.b, analysis_pairs.a))
    good = analysis_pairs.score >= threshold
    wide_best = best.b_score if narrow == "a" else best.a_score  # [n_wide]: best score against narrow
    cn = np.full(n_narrow, "unique", dtype=object)
    cn[pair_n[good]] = "matched"
    cn[[f.parent for f in families]] = "family parent"
    cw = np.where(wide_best < novel, "novel", "related").astype(object)
    cw[pair_w[good]] = "identical"
    cw[[m for f in families for m in f.members]] = "split child"
    return (cn, cw) if narrow == "a" else (cw, cn)


def analyse(index: MatchIndex, config: MatchConfig) -> MatchAnalysis:
    """Run every whole-dictionary step on a computed or loaded `MatchIndex`."""
    t = {}
    t0 = time.perf_counter()
    primary, score = _primary(index, config)
    t["all_pairs_score"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pairs = assign(score, config.assignment)
    best = many_to_one(score)
    t["assignment"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    how, null = _baseline(index, primary, config)
    chance = chance_level(null, config.chance_quantile)
    t["baseline"] = time.perf_counter() - t0
    threshold = max(config.same_threshold, chance)
    if primary == "activation_correlation":
        threshold = max(threshold, config.min_correlation)
    narrow = "a" if index.a.d_sae <= index.b.d_sae else "b"
    t0 = time.perf_counter()
    families, note = _families(index, score, narrow, config)
    t["families"] = time.perf_counter() - t0
    ca, cb = _classes(pairs, best, families, narrow, index.a.d_sae, index.b.d_sae, threshold, config.novel_threshold)
    agreement = None
    if index.dec_a is not None:
        t0 = time.perf_counter()
        enc = cosine_best(index.a.coder.W_enc.T.detach().numpy(), index.b.coder.W_enc.T.detach().numpy(),
                          config.block_size)
        agreement = float((enc.row_best == best.a_best).mean())
        t["encoder_cosine"] = time.perf_counter() - t0
    log.info("match %s × %s: %s", index.a.name, index.b.name, {k: round(v, 2) for k, v in t.items()})
    return MatchAnalysis(primary, score, pairs, best, null, how, chance, threshold, narrow, families, note,
                         ca, cb, agreement, t)


def curves(analysis: MatchAnalysis) -> dict[str, list[dict]]:
    """Fraction of the narrow dictionary matched at each threshold: one-to-one, many-to-one, baseline."""
    n_narrow = analysis.score.shape[0] if analysis.narrow == "a" else analysis.score.shape[1]  # TopK has .shape
    best = analysis.best.a_score if analysis.narrow == "a" else analysis.best.b_score
    return {"one_to_one": coverage_curve(analysis.one_to_one.score, n_narrow),
            "many_to_one": coverage_curve(best, n_narrow),
            "baseline_one_to_one": coverage_curve(analysis.null_scores, n_narrow)}


def pair_scores(index: MatchIndex, analysis: MatchAnalysis, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float32 [n]: the primary score of each listed pair (exact also above the dense limit: decoder
    cosines are recomputed per pair, correlations read from the stores in one pass)."""
    if not isinstance(analysis.score, TopK):
        return analysis.score[rows, cols]
    if analysis.primary == "decoder_cosine":
        return pair_cosines(index.dec_a, index.dec_b, rows, cols)
    return index.correlation_pairs(rows, cols)


def encoder_cosines(index: MatchIndex, rows: np.ndarray, cols: np.ndarray) -> np.ndarray | None:
    """float32 [n]: encoder cosine of each listed pair, or None where decoders do not share a space."""
    if index.dec_a is None:
        return None
    return pair_cosines(index.a.coder.W_enc.T.detach().numpy(), index.b.coder.W_enc.T.detach().numpy(), rows, cols)
