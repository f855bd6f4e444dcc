"""The per-latent API users were promised: `load_context`, `FeatureMatcher.find_matches`,
`compare_features` — all pairs are prefiltered (never a random sample), and the candidates
kept get the full comparison.

Example:
    >>> ctx = load_context("ultra", workspace="ws")
    >>> matcher = FeatureMatcher(ctx, "full")        # reads ws/match/ultra__full if it exists
    >>> report = matcher.find_matches(source_feature=18712 % ctx.d_sae, n_candidates=500, n_top_matches=10)
    >>> [(m.target_feature, round(m.combined_score, 2), m.notes) for m in report.matches[:3]]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._io import CFG_NAME
from ..errors import ConfigError
from ..workspace import Workspace
from .analysis import decoder_families, decoder_scores
from .config import MatchConfig
from .index import MatchIndex, Side, dictionary_names
from .run import build_index, match_dir
from .summary import token_decoder
from .top_tokens import jaccard_rows, token_set

log = logging.getLogger(__name__)


@dataclass
class FeatureContext:
    """A named dictionary of a workspace, with its latent store when it has been cached."""

    workspace: Workspace
    side: Side

    @property
    def name(self) -> str:
        return self.side.name

    @property
    def d_sae(self) -> int:
        return self.side.d_sae


def load_context(name: str, workspace: str | Path | Workspace | None = None) -> FeatureContext:
    """The dictionary `name` of `workspace` (default: $SAELAB_WORKSPACE or ./saelab-workspace) with its cache."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace.at(workspace)
    return FeatureContext(ws, Side.load(ws, name))


@dataclass(frozen=True)
class Match:
    """One candidate counterpart of a source latent, fully compared."""

    target_feature: int
    top_token_overlap: float | None
    """Jaccard of the two top-token sets (None without latent stores)"""
    shared_top_tokens: list[str]
    activation_correlation: float | None
    """Pearson r over the shared tokens, zeros included (None where the windows differ)"""
    decoder_cosine: float | None
    """cosine of the decoder rows (None across hookpoints or models)"""
    combined_score: float
    """mean of the signals that apply, each clipped at 0"""
    notes: str
    """what the match is, in words, with the thresholds that decided it"""


@dataclass(frozen=True)
class MatchReport:
    """What `find_matches` returns."""

    source: str
    target: str
    source_feature: int
    n_candidates_tested: int
    prefilter: str
    """the all-pairs signal that chose the candidates"""
    matches: list[Match]
    """best first (by combined_score)"""
    best_correlation: float | None
    signals: list[str]
    signals_not_used: dict[str, str]


class FeatureMatcher:
    """Find a latent's counterparts in another dictionary of the same workspace.

    target: a dictionary name (or context); None means the workspace's only other dictionary.
    Uses the saved `match/SOURCE__TARGET` (or TARGET__SOURCE) analysis when there is one, else
    computes the all-pairs index once here (one pass over each store).
    """

    def __init__(self, ctx: FeatureContext, target: str | FeatureContext | None = None,
                 config: MatchConfig | None = None) -> None:
        self.ctx, self.config = ctx, config or MatchConfig()
        ws = ctx.workspace
        name = target.name if isinstance(target, FeatureContext) else target or self._other(ws, ctx.name)
        self.index = self._load_index(ws, ctx.name, name)
        self._decode = token_decoder(ws)
        self._children, self._parent = self._family_maps()

    @staticmethod
    def _other(ws: Workspace, name: str) -> str:
        others = [n for n in dictionary_names(ws) if n != name]
        if len(others) != 1:
            raise ConfigError(f"target: not given, and {ws.root} has {len(others)} other dictionaries "
                              f"({', '.join(others) or 'none'}); pass FeatureMatcher(ctx, target=NAME).")
        return others[0]

    def _load_index(self, ws: Workspace, src: str, tgt: str) -> MatchIndex:
        for a, b, flip in ((src, tgt, False), (tgt, src, True)):
            path = match_dir(ws, a, b)
            if (path / CFG_NAME).exists():
                sides = (Side.load(ws, a), Side.load(ws, b))
                index = MatchIndex.load(path, *sides)
                log.info("matcher: using the saved analysis %s", path)
                return index.transposed() if flip else index
        log.info("matcher: no saved analysis of %s × %s; computing the all-pairs index", src, tgt)
        return build_index(ws, src, tgt, self.config)

    def _family_maps(self) -> tuple[dict[int, list[int]], dict[int, int]]:
        """(narrow parent → wide members, wide member → narrow parent), in source/target latent ids."""
        idx = self.index
        fams = idx.families
        if not fams and idx.dec_a is not None:
            narrow_is_source = idx.a.d_sae <= idx.b.d_sae
            nar, wide = (idx.dec_a, idx.dec_b) if narrow_is_source else (idx.dec_b, idx.dec_a)
            c = self.config
            fams = [f.to_dict() for f in decoder_families(nar, wide, decoder_scores(nar, wide, c), c)]
        children = {int(f["parent"]): [int(m) for m in f["members"]] for f in fams}
        parent = {int(m): int(f["parent"]) for f in fams for m in f["members"]}
        return children, parent

    @property
    def _source_is_narrow(self) -> bool:
        return self.index.a.d_sae <= self.index.b.d_sae

    def _check(self, arg: str, latent: int, side: Side) -> int:
        if isinstance(latent, bool) or not isinstance(latent, (int, np.integer)) or not 0 <= latent < side.d_sae:
            raise ConfigError(f"{arg}: got {latent!r}; expected a latent id of {side.name}, "
                              f"0 ≤ {arg} < {side.d_sae}.")
        return int(latent)

    def _prefilter(self, s: int) -> tuple[str, np.ndarray]:
        idx = self.index
        if idx.dec_a is not None:
            return "decoder_cosine", (torch.from_numpy(idx.dec_b) @ torch.from_numpy(idx.dec_a[s])).numpy()  # [n_b]
        return "activation_correlation", np.nan_to_num(idx.correlation_row(s), nan=-np.inf)  # [n_b]

    def _tokens(self, s: int, t: int) -> tuple[set[int], set[int]] | None:
        if self.index.top_a is None:
            return None
        return token_set(self.index.top_a[s]), token_set(self.index.top_b[t])

    def _notes(self, s: int, t: int, cos: float | None, corr: float | None, jac: float | None) -> str:
        c, idx = self.config, self.index
        words = []
        if self._source_is_narrow and t in self._children.get(s, []):
            words.append(f"family parent: {idx.b.name} {t} is one of its {len(self._children[s])} split children "
                         f"(NNLS rebuild ≥ {c.family_min_recon})")
        elif not self._source_is_narrow and self._parent.get(s) == t:
            words.append(f"split child of {idx.b.name} {t} (NNLS rebuild ≥ {c.family_min_recon})")
        primary, name = (cos, "decoder cosine") if cos is not None else (corr, "activation r")
        if primary is not None and primary >= c.same_threshold:
            words.append(f"same latent ({name} {primary:.2f} ≥ {c.same_threshold})")
        elif cos is not None and corr is not None and corr >= c.same_threshold:
            words.append(f"fires like it (activation r {corr:.2f} ≥ {c.same_threshold}) though the directions differ "
                         f"(decoder cosine {cos:.2f})")
        if jac is not None:
            strength = "strong" if jac > c.strong_jaccard else "moderate" if jac >= c.weak_jaccard else "weak"
            bound = {"strong": f"> {c.strong_jaccard}", "moderate": f"{c.weak_jaccard}–{c.strong_jaccard}",
                     "weak": f"< {c.weak_jaccard}"}[strength]
            words.append(f"{strength} top-token overlap (Jaccard {jac:.2f}, {bound})")
        if corr is not None:
            words.append(f"activation r {corr:.2f}"
                         + (f" ≤ {c.min_correlation}: not a match" if corr <= c.min_correlation else ""))
        if len(words) == (jac is not None) + (corr is not None):  # nothing but the raw numbers: weak
            words.insert(0, f"weak ({name} {primary:.2f} < {c.same_threshold})" if primary is not None else "weak")
        return "; ".join(words)

    def _match(self, s: int, t: int, cos: float | None, corr: float | None, jac: float | None,
               combined: float) -> Match:
        sets = self._tokens(s, t)
        shared = [self._decode(x) for x in sorted(sets[0] & sets[1])] if sets else []
        return Match(t, jac, shared, corr, cos, combined, self._notes(s, t, cos, corr, jac))

    def _signals(self, s: int, targets: np.ndarray, cos: np.ndarray | None) -> tuple[np.ndarray | None, ...]:
        """Correlation, top-token Jaccard and combined score of s with every latent in `targets` [n]."""
        idx = self.index
        corr = idx.correlation_pairs(np.full(targets.size, s), targets) if idx.correlation is not None else None
        jac = None
        if idx.top_a is not None:
            jac = jaccard_rows(np.broadcast_to(idx.top_a[s], (targets.size, idx.top_a.shape[1])), idx.top_b[targets])
        present = [np.maximum(v, 0.0) for v in (cos, corr, jac) if v is not None]
        combined = np.mean(present, axis=0) if present else np.zeros(targets.size, np.float32)
        return corr, jac, combined

    def find_matches(self, source_feature: int, n_candidates: int = 500, n_top_matches: int = 10) -> MatchReport:
        """The best `n_top_matches` counterparts of `source_feature` among the `n_candidates` that
        score highest on the all-pairs prefilter (decoder cosine, else activation correlation)."""
        idx = self.index
        s = self._check("source_feature", source_feature, idx.a)
        for arg, v in (("n_candidates", n_candidates), ("n_top_matches", n_top_matches)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{arg}: got {v!r}; expected a positive integer.")
        prefilter, row = self._prefilter(s)
        k = min(n_candidates, row.size)
        cand = np.argpartition(-row, k - 1)[:k] if k < row.size else np.arange(row.size)  # [k]
        cos = row[cand] if prefilter == "decoder_cosine" else None
        corr, jac, combined = self._signals(s, cand, cos)
        best = np.lexsort((cand, -combined))[:n_top_matches]
        opt = lambda v, i: None if v is None else float(v[i])  # noqa: E731
        matches = [self._match(s, int(cand[i]), opt(cos, i), opt(corr, i), opt(jac, i), float(combined[i]))
                   for i in best]
        return MatchReport(idx.a.name, idx.b.name, s, int(k), prefilter, matches,
                           float(corr.max()) if corr is not None else None, idx.signals, dict(idx.reasons))

    def compare_features(self, source_fid: int, target_fid: int) -> dict:
        """Every signal for one pair, and the top-token sets split into shared / source-only / target-only."""
        idx = self.index
        s, t = self._check("source_fid", source_fid, idx.a), self._check("target_fid", target_fid, idx.b)
        cos = float(idx.dec_a[s] @ idx.dec_b[t]) if idx.dec_a is not None else None
        corr, jac, combined = self._signals(s, np.array([t]), None if cos is None else np.array([cos], np.float32))
        m = self._match(s, t, cos, None if corr is None else float(corr[0]), None if jac is None else float(jac[0]),
                        float(combined[0]))
        sets = self._tokens(s, t) or (set(), set())
        return {"source_fid": s, "target_fid": t, "jaccard_similarity": m.top_token_overlap,
                "shared_tokens": m.shared_top_tokens,
                "source_only_tokens": [self._decode(x) for x in sorted(sets[0] - sets[1])],
                "target_only_tokens": [self._decode(x) for x in sorted(sets[1] - sets[0])],
                "decoder_cosine": cos, "activation_correlation": m.activation_correlation,
                "combined_score": m.combined_score, "notes": m.notes, "signals_not_used": dict(idx.reasons)}
