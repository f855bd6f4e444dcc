"""The per-pair signals of two dictionaries, held in memory so one latent's matches are a lookup.

`MatchIndex` holds unit decoder rows (when both read the same hookpoint of the same model),
the all-pairs activation correlation (when both were cached over the same windows) and every
latent's top-token set. It is built from a saved `match/A__B/` artifact in well under a
second, or computed from the workspace (one pass over each store).

Above `MatchConfig.dense_limit` entries the correlation is a `TopK` (each latent's best
`candidates` partners by r, one pass over both stores per block of A's latents) and is saved as
such: 4 arrays of (n_a + n_b) · k entries instead of a float16 [n_a, n_b] matrix (4.3 GB at
131,072 × 16,384). A pair outside the candidates is then read from the stores when a table
needs it (`correlation_pairs`), and shows as NaN in a latent's prefilter row.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import CFG_NAME, atomic_path, read_json
from ..coders import SparseCoder
from ..errors import ArtifactError, ConfigError, choices_message
from ..latents.source import has_dictionary, load_store_dictionary
from ..latents.store import LatentStore
from ..workspace import Workspace
from .config import MatchConfig
from .similarity import correlation_scores, pair_pearson, unit_rows, windows_mismatch
from .top_tokens import top_token_ids
from .topk import TopK

log = logging.getLogger(__name__)

CORRELATION_FILE = "correlation.safetensors"
TOP_TOKENS_FILE = "top_tokens.safetensors"


@dataclass
class Side:
    """One dictionary of a match: its name, weights and (if cached) latent store."""

    name: str
    coder: SparseCoder
    store: LatentStore | None
    """None when the workspace has no complete latent store for it"""

    @property
    def d_sae(self) -> int:
        return self.coder.cfg.d_sae

    @classmethod
    def load(cls, workspace: Workspace, name: str) -> "Side":
        if not has_dictionary(workspace, name):
            raise ConfigError(choices_message("dictionary", name, dictionary_names(workspace),
                                              f"(dictionaries of {workspace.root}; train one with `saelab train`, or "
                                              "cache a path or Hub repo with `saelab cache -d SPEC`)."))
        coder = load_store_dictionary(workspace, name)
        path = workspace.latents(name)
        store = LatentStore(path) if (path / CFG_NAME).exists() else None
        if store is not None and store.d_sae != coder.cfg.d_sae:
            raise ArtifactError(f"latents/{name} has d_sae {store.d_sae} but dictionaries/{name} has "
                                f"{coder.cfg.d_sae}: re-run `saelab cache --dict {name} --overwrite`.")
        return cls(name, coder, store)


def dictionary_names(workspace: Workspace) -> list[str]:
    """Names of the dictionaries saved in `workspace/dictionaries/`."""
    root, stores = workspace.root / "dictionaries", workspace.root / "latents"
    own = sorted(p.name for p in root.iterdir() if (p / CFG_NAME).exists()) if root.exists() else []
    cached = sorted(p.name for p in stores.iterdir() if p.name not in own and has_dictionary(workspace, p.name)) \
        if stores.exists() else []
    return own + cached


def decoder_reason(a: SparseCoder, b: SparseCoder) -> str | None:
    """Why decoder cosine does not apply to this pair, or None when it does."""
    ca, cb = a.cfg, b.cfg
    if "crosscoder" in (ca.kind, cb.kind):
        return "one of the dictionaries is a crosscoder (several decoder spaces)"
    if (ca.model, ca.hookpoint) != (cb.model, cb.hookpoint):
        return (f"they read different hookpoints ({ca.model or '?'}:{ca.hookpoint or '?'} vs "
                f"{cb.model or '?'}:{cb.hookpoint or '?'}), so their directions live in different spaces")
    if a.d_out != b.d_out or (ca.out_hookpoint != cb.out_hookpoint):
        return f"their decoders write to different spaces (d_out {a.d_out} vs {b.d_out})"
    return None


def correlation_reason(a: Side, b: Side) -> str | None:
    """Why activation correlation does not apply to this pair, or None when it does."""
    missing = [s.name for s in (a, b) if s.store is None]
    if missing:
        return f"no latent store for {', '.join(missing)}: run `saelab cache --dict {' --dict '.join(missing)}`"
    return windows_mismatch(a.store, b.store)  # type: ignore[arg-type]


@dataclass
class MatchIndex:
    """Everything needed to score any pair (a, b) without touching the stores again."""

    a: Side
    b: Side
    dec_a: np.ndarray | None
    """float32 [n_a, d] unit decoder rows, or None where decoder cosine does not apply"""
    dec_b: np.ndarray | None
    correlation: np.ndarray | TopK | None
    """float16/32 [n_a, n_b] Pearson r over the shared tokens (a `TopK` above the dense limit), or None"""
    top_a: np.ndarray | None
    """int32 [n_a, k] top-token ids (−1 padded), or None without stores"""
    top_b: np.ndarray | None
    reasons: dict[str, str] = field(default_factory=dict)
    """signal → why it was not used"""
    families: list[dict] = field(default_factory=list)
    """families.json's families (parents in the narrow dictionary), when an analysis was saved"""

    @property
    def signals(self) -> list[str]:
        used = []
        if self.dec_a is not None:
            used.append("decoder_cosine")
        if self.correlation is not None:
            used.append("activation_correlation")
        if self.top_a is not None:
            used.append("top_token_overlap")
        return used

    def transposed(self) -> "MatchIndex":
        """The same index seen from B: rows are B's latents."""
        return MatchIndex(self.b, self.a, self.dec_b, self.dec_a,
                          None if self.correlation is None else self.correlation.T, self.top_b, self.top_a,
                          dict(self.reasons), self.families)

    def correlation_row(self, s: int) -> np.ndarray:
        """float32 [n_b]: r of A's latent s with every latent of B (NaN where a `TopK` lacks the pair)."""
        assert self.correlation is not None
        if isinstance(self.correlation, TopK):
            return self.correlation.row(s)
        return np.asarray(self.correlation[s], np.float32)

    def correlation_pairs(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """float32 [n]: r of each pair (rows[i], cols[i]); exact, from the stores for pairs a `TopK` lacks."""
        assert self.correlation is not None
        if not isinstance(self.correlation, TopK):
            return np.asarray(self.correlation[rows, cols], np.float32)
        out = self.correlation.lookup(rows, cols)
        miss = np.isnan(out)
        if miss.any() and self.a.store is not None and self.b.store is not None:
            out[miss] = pair_pearson(self.a.store, self.b.store, np.asarray(rows)[miss], np.asarray(cols)[miss])
        return out

    @classmethod
    def compute(cls, a: Side, b: Side, top_k_tokens: int = 20, tokens: np.ndarray | None = None,
                config: MatchConfig | None = None) -> "MatchIndex":
        """Compute every signal that applies (one pass per store for correlation and top tokens;
        one per block of A's latents above `config.dense_limit`)."""
        config = config or MatchConfig()
        reasons = {}
        dec_reason = decoder_reason(a.coder, b.coder)
        if dec_reason:
            reasons["decoder_cosine"] = dec_reason
        corr_reason = correlation_reason(a, b)
        dec = (None, None) if dec_reason else (unit_rows(a.coder.W_dec), unit_rows(b.coder.W_dec))
        corr = None
        if corr_reason:
            reasons["activation_correlation"] = corr_reason
        else:
            t0 = time.perf_counter()
            corr = correlation_scores(a.store, b.store, config)  # type: ignore[arg-type]
            log.info("activation correlation %d × %d in %.1f s", a.d_sae, b.d_sae, time.perf_counter() - t0)
        top_a = top_b = None
        if tokens is not None and a.store is not None and b.store is not None:
            top_a, top_b = top_token_ids(a.store, tokens, top_k_tokens), top_token_ids(b.store, tokens, top_k_tokens)
        else:
            reasons["top_token_overlap"] = "needs both latent stores and the workspace's token windows"
        return cls(a, b, *dec, corr, top_a, top_b, reasons)

    def save(self, directory: Path) -> None:
        """Write the correlation (float16) and top tokens beside the analysis."""
        from safetensors.numpy import save_file

        if self.correlation is not None:
            c = self.correlation
            tensors = ({"r": np.ascontiguousarray(c, np.float16)} if not isinstance(c, TopK) else
                       {"row_idx": c.row_idx, "row_val": c.row_val.astype(np.float16), "col_idx": c.col_idx,
                        "col_val": c.col_val.astype(np.float16)})
            with atomic_path(directory / CORRELATION_FILE) as tmp:
                save_file(tensors, str(tmp))
        if self.top_a is not None:
            with atomic_path(directory / TOP_TOKENS_FILE) as tmp:
                save_file({"a": self.top_a, "b": self.top_b}, str(tmp))

    @classmethod
    def load(cls, directory: Path, a: Side, b: Side) -> "MatchIndex":
        """Read a saved analysis of (a, b) from `directory` (its cfg.json names a and b)."""
        from safetensors.numpy import load_file

        cfg: dict[str, Any] = read_json(directory / CFG_NAME)
        if (cfg["a"], cfg["b"]) != (a.name, b.name) or (cfg["d_sae_a"], cfg["d_sae_b"]) != (a.d_sae, b.d_sae):
            raise ArtifactError(f"{directory} was written for {cfg['a']} × {cfg['b']} "
                                f"({cfg['d_sae_a']} × {cfg['d_sae_b']}): "
                                f"re-run `saelab match --a {a.name} --b {b.name}`.")
        reasons = dict(cfg.get("signals_not_used", {}))
        dec = (None, None) if "decoder_cosine" in reasons else (unit_rows(a.coder.W_dec), unit_rows(b.coder.W_dec))
        corr = _load_correlation(directory / CORRELATION_FILE, (a.d_sae, b.d_sae))
        tops = load_file(str(directory / TOP_TOKENS_FILE)) if (directory / TOP_TOKENS_FILE).exists() else {}
        families = read_json(directory / "families.json")["families"] if (directory / "families.json").exists() else []
        return cls(a, b, *dec, corr, tops.get("a"), tops.get("b"), reasons, families)


def _load_correlation(path: Path, shape: tuple[int, int]) -> np.ndarray | TopK | None:
    """The saved correlation: a dense float16 [n_a, n_b] `r`, or a `TopK`'s four arrays."""
    from safetensors.numpy import load_file

    if not path.exists():
        return None
    t = load_file(str(path))
    if "r" in t:
        return t["r"]
    return TopK(t["row_idx"], t["row_val"].astype(np.float32), t["col_idx"], t["col_val"].astype(np.float32), shape)
