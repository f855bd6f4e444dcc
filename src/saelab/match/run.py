"""`run(config, workspace, a, b)`: match two dictionaries of a workspace, all pairs, and write
`match/A__B/`: cfg.json, matches.parquet, latents.parquet, families.json, the correlation
and top-token index, summary.md with coverage.png."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path, cfg_matches, write_cfg, write_json
from ..errors import ConfigError
from ..latents.manifest import dictionary_hash
from ..lock import hold_directory
from ..workspace import Workspace
from .analysis import MatchAnalysis, analyse, curves, encoder_cosines, pair_scores
from .config import MatchConfig
from .index import MatchIndex, Side
from .top_tokens import jaccard_rows

log = logging.getLogger(__name__)


def match_dir(workspace: Workspace, a: str, b: str) -> Path:
    """Where the analysis of (a, b) lives: `workspace/match/A__B`."""
    return workspace.root / "match" / f"{a}__{b}"


def inputs(side: Side) -> dict[str, Any]:
    """What a match of `side` depends on: its weights, and the store its activation signals come from."""
    st = side.store
    return {"dictionary_hash": dictionary_hash(side.coder),
            "store": None if st is None else {k: st.cfg.get(k) for k in ("dictionary_hash", "tokens_hash", "complete")}}


def build_index(workspace: Workspace, a: str, b: str, config: MatchConfig,
                sides: tuple[Side, Side] | None = None) -> MatchIndex:
    """Load both dictionaries (and stores; or take `sides` already loaded) and compute every signal that applies."""
    if a == b:
        raise ConfigError(f"b: got {b!r}, the same dictionary as a; match two different dictionaries.")
    sa, sb = sides or (Side.load(workspace, a), Side.load(workspace, b))
    tokens = None
    if sa.store is not None and sb.store is not None and (workspace.tokens / "cfg.json").exists():
        from ..data.tokens import load_token_windows

        windows = load_token_windows(workspace.tokens)
        if windows.tokens_hash == sa.store.tokens_hash == sb.store.tokens_hash:
            tokens = windows.tokens.numpy()
    index = MatchIndex.compute(sa, sb, config.top_k_tokens, tokens, config)
    if index.dec_a is None and index.correlation is None:
        raise ConfigError(f"a, b: {a} and {b} share no signal to match on: decoder cosine does not apply "
                          f"({index.reasons['decoder_cosine']}) and activation correlation does not either "
                          f"({index.reasons['activation_correlation']}).")
    return index


def _pair_table(index: MatchIndex, analysis: MatchAnalysis, config: MatchConfig) -> dict[str, np.ndarray]:
    """Rows: the one-to-one pairs and every latent's best partner (A's and B's), deduplicated."""
    p, best = analysis.one_to_one, analysis.best
    n_a = index.a.d_sae
    rows = np.concatenate([p.a, np.arange(n_a), best.b_best])
    cols = np.concatenate([p.b, best.a_best, np.arange(index.b.d_sae)])
    key = np.unique(rows * index.b.d_sae + cols)
    rows, cols = key // index.b.d_sae, key % index.b.d_sae
    one = np.zeros(index.a.d_sae, np.int64) - 1
    one[p.a] = p.b
    score = pair_scores(index, analysis, rows, cols)
    table: dict[str, Any] = {
        "latent_a": rows, "latent_b": cols, "score": score,
        "one_to_one": one[rows] == cols, "best_for_a": best.a_best[rows] == cols,
        "best_for_b": best.b_best[cols] == rows}
    table["above_chance"] = table["one_to_one"] & (table["score"] >= analysis.match_threshold)
    if index.dec_a is not None:
        table["decoder_cosine"] = score
        table["encoder_cosine"] = encoder_cosines(index, rows, cols)
    if index.correlation is not None:
        table["activation_correlation"] = index.correlation_pairs(rows, cols)
    if index.top_a is not None:
        table["top_token_jaccard"] = jaccard_rows(index.top_a[rows], index.top_b[cols])
    return table


def _latent_table(side: str, index: MatchIndex, analysis: MatchAnalysis) -> dict[str, np.ndarray]:
    n = index.a.d_sae if side == "a" else index.b.d_sae
    best, score = ((analysis.best.a_best, analysis.best.a_score) if side == "a"
                   else (analysis.best.b_best, analysis.best.b_score))
    mine, theirs = ((analysis.one_to_one.a, analysis.one_to_one.b) if side == "a"
                    else (analysis.one_to_one.b, analysis.one_to_one.a))
    partner, partner_score = np.full(n, -1, np.int64), np.full(n, np.nan, np.float32)
    partner[mine], partner_score[mine] = theirs, analysis.one_to_one.score
    s = index.a if side == "a" else index.b
    freq = s.store.frequencies().per_token if s.store is not None else np.full(n, np.nan)
    return {"dictionary": np.full(n, s.name, dtype=object), "latent": np.arange(n),
            "class": analysis.classes_a if side == "a" else analysis.classes_b,
            "one_to_one_partner": partner, "one_to_one_score": partner_score, "best_partner": best,
            "best_score": score, "frequency": freq}


def _write_parquet(path: Path, columns: dict[str, np.ndarray]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: pa.array(list(v) if v.dtype == object else v) for k, v in columns.items()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def counts(analysis: MatchAnalysis) -> dict[str, dict[str, int]]:
    """How many latents of each dictionary fall in each class."""
    out = {}
    for side, classes in (("a", analysis.classes_a), ("b", analysis.classes_b)):
        values, n = np.unique(classes.astype(str), return_counts=True)
        out[side] = {str(v): int(c) for v, c in zip(values, n)}
    return out


def run(config: MatchConfig, workspace: Workspace, a: str, b: str, out_dir: Path | None = None,
        resume: bool = False) -> Path:
    """Match dictionary `a` against dictionary `b` (names in `workspace`), all pairs.

    Decoder (and encoder) cosine where both read the same hookpoint of the same model,
    Pearson correlation of activations where both were cached over the same windows,
    top-token overlap where stores and tokens exist; the report says which were used.

    With `resume`, a whole match already in the output directory, of the same weights, latent stores and
    settings, is kept as it is.

    Returns: the artifact directory (`workspace/match/A__B` unless `out_dir`).

    Example:
        >>> path = run(MatchConfig(), Workspace.at("ws"), "ultra", "full")
        >>> pd.read_parquet(path / "matches.parquet").query("one_to_one and above_chance")
    """
    out = out_dir or match_dir(workspace, a, b)
    with workspace.lock("match", out.name) if out_dir is None else hold_directory(out):  # the one writer of it
        return _match(config, workspace, a, b, out, resume)


def _match(config: MatchConfig, workspace: Workspace, a: str, b: str, out: Path, resume: bool) -> Path:
    t0 = time.perf_counter()
    sides = (Side.load(workspace, a), Side.load(workspace, b)) if a != b else None
    used = [inputs(side) for side in sides] if sides else None
    if resume and cfg_matches(out, {"a": a, "b": b, "config": config.to_dict(), "inputs": used}):
        log.info("match %s × %s: %s holds it already (same weights, stores and settings)", a, b, out)
        return out
    index = build_index(workspace, a, b, config, sides)
    t_index = time.perf_counter() - t0
    analysis = analyse(index, config)
    out.mkdir(parents=True, exist_ok=True)
    t1 = time.perf_counter()
    index.save(out)
    _write_parquet(out / "matches.parquet", _pair_table(index, analysis, config))
    _write_parquet(out / "latents.parquet", {k: np.concatenate([x, y]) for (k, x), y in zip(
        _latent_table("a", index, analysis).items(), _latent_table("b", index, analysis).values())})
    write_json(out / "families.json", {"narrow": index.a.name if analysis.narrow == "a" else index.b.name,
                                       "note": analysis.family_note,
                                       "families": [f.to_dict() for f in analysis.families]})
    from .summary import write_summary

    headline = write_summary(out, workspace, index, analysis, config)
    timings = {"index": round(t_index, 2), **{k: round(v, 2) for k, v in analysis.timings.items()},
               "write": round(time.perf_counter() - t1, 2), "total": round(time.perf_counter() - t0, 2)}
    write_cfg(out, {"artifact": "match", "a": a, "b": b, "inputs": used, "d_sae_a": index.a.d_sae,
                    "d_sae_b": index.b.d_sae, "config": config.to_dict(), "primary_signal": analysis.primary,
                    "signals_used": index.signals,
                    "signals_not_used": index.reasons, "baseline": analysis.baseline, "chance": analysis.chance,
                    "match_threshold": analysis.match_threshold, "encoder_agreement": analysis.encoder_agreement,
                    "counts": counts(analysis), "headline": headline, "curves": curves(analysis),
                    "timings_s": timings})  # written last: its presence means the artifact is whole
    log.info("match %s × %s written to %s in %.1f s", a, b, out, timings["total"])
    return out
