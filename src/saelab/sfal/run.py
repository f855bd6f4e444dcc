"""The `sfal` stage: co-occurrence counts + explanations → per-latent alignment scores.

On disk (`workspace/sfal/NAME/`): `scores.csv` (one row per scored latent), `masked.csv`
(dead and unexplained latents, left out of both rankings), `summary.md`,
`ndcg_distribution.png`, `summary.json` (aggregates), `explanations.jsonl` (the texts
used) and `cfg.json`. Embeddings are cached in `workspace/sfal/_embedding_cache/`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import read_json, write_cfg, write_json, write_text
from ..cooc.counts import CoocCounts
from ..cooc.run import cooc_dir, load_cooc
from ..data.tokens import TokenWindows, load_token_windows
from ..errors import ArtifactError, ConfigError
from ..interp.explainers.top_tokens import TOP_TOKENS
from ..interp.top_tokens import top_token_explanations
from ..latents.store import LatentStore
from ..models.embed import Embedder, EmbeddingCache
from ..workspace import Workspace
from . import score as S
from .config import SfalConfig
from .explanations import Explanations, from_interp_run, load_explanations
from .summary import aggregate, correlations, markdown, plot, write_csv, write_masked

log = logging.getLogger(__name__)
INTERP = "interp"


@dataclass
class SfalResult:
    out_dir: Path
    csv: Path
    summary: Path
    aggregates: dict[str, dict[str, float]]
    """Per embedding model: see `summary.aggregate`."""
    scores: dict[str, dict[str, np.ndarray]]
    """Per embedding model: ndcg [m], overlap [m], ndcg_permuted [P, m], overlap_permuted [P, m]."""
    latents: np.ndarray
    """int64 [m]: the scored latents (alive and explained), in the order of the arrays."""


def sfal_dir(workspace: Workspace, name: str) -> Path:
    return workspace.root / "sfal" / name


def _tokenizer(windows: TokenWindows) -> Any:
    path = windows.cfg.get("tokenizer")
    if not path:
        log.warning("token windows name no tokenizer: top-token descriptions show token ids")
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def explanations_for(spec: str, config: SfalConfig, workspace: Workspace, dictionary: str,
                     tokenizer: Any = None) -> Explanations:
    """`top-tokens` (computed from the latent store), `interp` / `interp:RUN` (the dictionary's saelab
    autointerp run, or the one named RUN), or a file / directory (see explanations.py)."""
    store = LatentStore(workspace.latents(dictionary))
    if spec == INTERP or spec.startswith(INTERP + ":"):
        from ..interp.load import find_run

        run_dir = find_run(workspace, dictionary, spec.partition(":")[2] or None)
        if run_dir is None:
            raise ConfigError(f"explanations: {spec!r}, but {workspace.root / 'interp'} holds no interp run of "
                              f"{dictionary!r}; run `saelab autointerp` first, or give top-tokens or a file.")
        return from_interp_run(run_dir, store.d_sae)
    if spec == TOP_TOKENS.name:
        windows = load_token_windows(workspace.tokens)
        tok = tokenizer if tokenizer is not None else _tokenizer(windows)
        texts = top_token_explanations(store, windows, tok, n_top=config.n_top_tokens)
        return Explanations(texts, f"{TOP_TOKENS.name} of {store.path}", TOP_TOKENS.kind)
    return load_explanations(spec, store.d_sae, type_name=config.neuronpedia_type,
                             explainer=config.neuronpedia_explainer, sae=config.neuronpedia_sae)


def embed_explanations(expl: Explanations, config: SfalConfig,
                       workspace: Workspace) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per model: (latents int64 [m], vectors float32 [m, dim]), through the on-disk cache."""
    cache = EmbeddingCache(workspace.root / "sfal" / "_embedding_cache")
    latents = np.array(sorted(expl.texts), np.int64)
    out = {}
    for model in config.embeddings:
        vectors, n_new = cache.embed([expl.texts[int(i)] for i in latents],
                                     Embedder(model, batch_size=config.batch_size))
        log.info("embeddings %s: %d texts (%d new, %d from cache)", model, latents.size, n_new, latents.size - n_new)
        out[model] = (latents, vectors)
    return out


def score_latents(counts: CoocCounts, vectors: np.ndarray, cand: np.ndarray,
                  config: SfalConfig) -> dict[str, np.ndarray]:
    """NDCG and overlap of the candidates `cand` (int64 [m], alive and explained; rows of `vectors`)."""
    m = cand.size
    n = min(config.top_n, m - 1)
    sym = counts.symmetric()[cand][:, cand].tocsr()  # [m, m]
    phi_lists = S.phi_top(sym, counts.latent_counts[cand], counts.n_windows, n)
    sem_lists = S.semantic_top(vectors, n)
    rng = np.random.default_rng(config.seed)
    perms = [rng.permutation(m) for _ in range(config.n_permutations)]
    shuffled = [S.permuted_lists(sem_lists, p) for p in perms]
    return {"ndcg": S.ndcg(phi_lists, sem_lists), "overlap": S.overlap(phi_lists, sem_lists, config.overlap_k),
            "ndcg_permuted": np.stack([S.ndcg(phi_lists, s) for s in shuffled]),
            "overlap_permuted": np.stack([S.overlap(phi_lists, s, config.overlap_k) for s in shuffled])}


def run(config: SfalConfig, workspace: Workspace, dictionary: str, explanations: str | Explanations,
        cooc: str | None = None, name: str | None = None, output: str | Path | None = None,
        interp_scores: str | Path | None = None, tokenizer: Any = None) -> SfalResult:
    """Score how well co-occurrence (φ) neighbours agree with explanation similarity.

    Args:
        dictionary: the latent store `workspace/latents/<dictionary>`.
        explanations: `top-tokens`, a path (Neuronpedia export, CSV/JSONL, saelab interp run),
            or an `Explanations` object.
        cooc: the co-occurrence artifact `workspace/cooc/<cooc or dictionary>` (run `cooc` first).
        output: the CSV path (default `workspace/sfal/<name or dictionary>/scores.csv`).
        interp_scores: optional CSV/JSONL of auto-interp scores (latent + numeric columns).

    Example:
        >>> r = run(SfalConfig(top_n=255), ws, "sae6", "top-tokens")
        >>> r.aggregates["all-MiniLM-L6-v2"]["ndcg_mean"], r.csv
    """
    with workspace.lock("sfal", sfal_dir(workspace, name or dictionary).name):  # the one writer of sfal/NAME
        return _sfal(config, workspace, dictionary, explanations, cooc, name, output, interp_scores, tokenizer)


def _sfal(config: SfalConfig, workspace: Workspace, dictionary: str, explanations: str | Explanations,
          cooc: str | None, name: str | None, output: str | Path | None, interp_scores: str | Path | None,
          tokenizer: Any) -> SfalResult:
    co = load_cooc(cooc_dir(workspace, cooc or dictionary))
    expl = explanations if isinstance(explanations, Explanations) else \
        explanations_for(explanations, config, workspace, dictionary, tokenizer)
    counts = co.counts
    if any(i >= counts.d_sae for i in expl.texts):
        raise ConfigError(f"explanations: latent ids up to {max(expl.texts)} but the dictionary has {counts.d_sae}.")
    explained = np.zeros(counts.d_sae, bool)
    explained[list(expl.texts)] = True
    alive = counts.latent_counts > 0
    cand = np.flatnonzero(alive & explained)
    if cand.size < 2:
        raise ArtifactError(f"only {cand.size} latents are both alive and explained; SFAL needs at least 2.")
    per_model = {}
    for model, (latents, vectors) in embed_explanations(expl, config, workspace).items():
        rows = np.searchsorted(latents, cand)
        per_model[model] = score_latents(counts, vectors[rows], cand, config)
    return _write(config, workspace, dictionary, co, expl, cand, per_model, name, output, interp_scores,
                  dead=np.flatnonzero(~alive), unexplained=np.flatnonzero(alive & ~explained))


def _write(config: SfalConfig, workspace: Workspace, dictionary: str, co: Any, expl: Explanations,
           cand: np.ndarray, per_model: dict[str, dict[str, np.ndarray]], name: str | None,
           output: str | Path | None, interp_scores: str | Path | None, dead: np.ndarray,
           unexplained: np.ndarray) -> SfalResult:
    out = sfal_dir(workspace, name or dictionary)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = Path(output) if output else out / "scores.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(csv_path, expl, cand, co.counts.latent_counts, per_model, config.overlap_k)
    write_masked(out / "masked.csv", dead, unexplained)
    aggregates = {m: aggregate(s) for m, s in per_model.items()}
    corr = {m: correlations(cand, s["ndcg"], interp_scores) for m, s in per_model.items()}
    plot(out / "ndcg_distribution.png", per_model)
    cc = co.cfg["config"]
    cfg = {"artifact": "sfal", "dictionary": dictionary, "cooc": str(co.path), "n_windows": co.counts.n_windows,
           "k": cc["k"], "window": cc["window"], "partial": cc["partial"], "n": min(config.top_n, cand.size - 1),
           **asdict(config), "explanations": {"source": expl.source, "kind": expl.kind, "n": len(expl.texts),
                                              "skipped": dict(expl.skipped)},
           "n_scored": int(cand.size), "n_dead": int(dead.size), "n_unexplained": int(unexplained.size),
           "csv": str(csv_path)}
    summary = markdown(cfg, expl, aggregates, corr, {"dead": int(dead.size), "unexplained": int(unexplained.size)},
                       "ndcg_distribution.png")
    write_text(out / "summary.md", summary)
    write_json(out / "summary.json", {"aggregates": aggregates, "correlations": corr})
    write_text(out / "explanations.jsonl", "".join(json.dumps({"latent": i, "explanation": t}) + "\n"
                                                   for i, t in sorted(expl.texts.items())))
    write_cfg(out, cfg)
    return SfalResult(out, csv_path, out / "summary.md", aggregates, per_model, cand)


def load_summary(path: str | Path) -> dict[str, Any]:
    return read_json(Path(path) / "summary.json")
