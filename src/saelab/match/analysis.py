"""The whole-dictionary analysis: all-pairs scores → one-to-one and many-to-one matches, the
coverage curve against a random baseline, families, and a class for every latent."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .assignment import ManyToOne, OneToOne, assign, chance_level, coverage_curve, many_to_one, random_rotation
from .config import MatchConfig
from .families import Family, family_activation_stats, find_families
from .index import MatchIndex
from .similarity import activation_moments, cosine_best, cosine_matrix, pair_cosines, pearson

log = logging.getLogger(__name__)

NARROW_CLASSES = ("matched", "family parent", "unique")
WIDE_CLASSES = ("identical", "split child", "related", "novel")


@dataclass
class MatchAnalysis:
    """What `analyse` finds. Rows of every [n_a, n_b] matrix are latents of A."""

    primary: str
    """the signal that decides matches: decoder_cosine (same hookpoint) or activation_correlation"""
    score: np.ndarray
    """float32 [n_a, n_b]: the primary signal for every pair"""
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


def _primary(index: MatchIndex, config: MatchConfig) -> tuple[str, np.ndarray]:
    if index.dec_a is not None:
        return "decoder_cosine", cosine_matrix(index.dec_a, index.dec_b, config.block_size)
    assert index.correlation is not None
    return "activation_correlation", np.asarray(index.correlation, np.float32)


def _baseline(index: MatchIndex, primary: str, config: MatchConfig) -> tuple[str, np.ndarray]:
    """One-to-one scores when the pairing is random: rotated decoders, or shuffled windows."""
    if primary == "decoder_cosine":
        q = random_rotation(index.dec_b.shape[1], config.seed)  # [d, d]
        rotated = (torch.from_numpy(index.dec_b) @ torch.from_numpy(q)).numpy()  # [n_b, d]
        null = cosine_matrix(index.dec_a, rotated, config.block_size)
        how = "decoder rows of B rotated by a random orthogonal matrix"
    else:
        null = pearson(activation_moments(index.a.store, index.b.store, shuffle_seed=config.seed))
        how = "windows of B shuffled within each shard (firing rates kept, token alignment broken)"
    return how, assign(null, config.assignment).score


def _families(index: MatchIndex, score: np.ndarray, narrow: str, config: MatchConfig) -> tuple[list[Family], str]:
    if index.dec_a is None:
        return [], "no family search: " + index.reasons.get("decoder_cosine", "decoder cosine does not apply")
    nar, wide, cos = ((index.dec_a, index.dec_b, score) if narrow == "a" else (index.dec_b, index.dec_a, score.T))
    fams = find_families(nar, wide, cos, config.family_candidates, config.family_min_weight,
                         config.family_min_recon, config.family_min_gain)
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
    n_narrow = analysis.score.shape[0] if analysis.narrow == "a" else analysis.score.shape[1]
    best = analysis.best.a_score if analysis.narrow == "a" else analysis.best.b_score
    return {"one_to_one": coverage_curve(analysis.one_to_one.score, n_narrow),
            "many_to_one": coverage_curve(best, n_narrow),
            "baseline_one_to_one": coverage_curve(analysis.null_scores, n_narrow)}


def encoder_cosines(index: MatchIndex, rows: np.ndarray, cols: np.ndarray) -> np.ndarray | None:
    """float32 [n]: encoder cosine of each listed pair, or None where decoders do not share a space."""
    if index.dec_a is None:
        return None
    return pair_cosines(index.a.coder.W_enc.T.detach().numpy(), index.b.coder.W_enc.T.detach().numpy(), rows, cols)
