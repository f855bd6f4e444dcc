"""The latent table of one layer (`features/layer_LL/latent_table.json`) and the report's examples.

Per latent: Δnorm and its tag, decoder cosine, decoder change, firing count and frequency
(overall and per group: corpus and each category), and for the exclusive latents the
latent-scaling ratios ν_ε, ν_r with the artifact flag. Per layer: tag counts among latents
that fire and the spread of their Δnorm (`delta_norm_spread`), tokens per group, each tag's mean
per-latent firing rate per group, the held-out FVU of each model, and the latent-scaling summary.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .._io import read_json, write_cfg, write_json
from ..coders import SparseCoder
from ..latents import LatentStore
from ..latents.manifest import dictionary_hash
from .features import decoder_change, encode_latents, heldout_windows
from .pair import PairedActivations, valid_mask, window_groups

log = logging.getLogger(__name__)
TAGS = ("target-only", "base-only", "shared", "other")
MAX_SCALING = 200
"""Exclusive latents per tag tested by latent scaling (the most frequent ones)."""


def _request(acts: PairedActivations, coder: SparseCoder, config: Any) -> dict[str, Any]:
    return {"tokens_hash": acts.cfg["tokens_hash"], "crosscoder_hash": dictionary_hash(coder),
            "threshold": config.feature_threshold, "heldout_fraction": config.heldout_fraction}


def build_table(acts: PairedActivations, coder: SparseCoder, layer: int, out: Path, config: Any
                ) -> tuple[str, LatentStore]:
    """Encode, measure and write the layer's latent table; ("resumed" | "ran", the latent store)."""
    request = _request(acts, coder, config)
    if (out / "latent_table.json").exists() and (out / "cfg.json").exists() and \
            read_json(out / "cfg.json").get("request") == request:
        _add_spread(out / "latent_table.json")
        return "resumed", LatentStore(out / "latents")
    held = heldout_windows(acts, config.heldout_fraction)
    store, fvu = encode_latents(acts, coder, layer, out / "latents", heldout=held)
    table = latent_table(acts, coder, store, layer, config.feature_threshold)
    table["fvu"] = {**fvu, "split": "held-out corpus"}
    table["crosscoder"] = {"d_sae": coder.d_sae, "k": coder.cfg.k, "hookpoint": coder.cfg.hookpoint,
                           "training": coder.cfg.extra.get("training")}
    write_json(out / "latent_table.json", table)
    write_cfg(out, {"artifact": "diff_features", "layer": layer, "request": request,
                    "files": ["latents/", "latent_table.json", "examples.json"]})
    return "ran", store


def delta_spread(table: dict[str, Any]) -> dict[str, Any]:
    """The table's `delta_norm_spread` (a table written before it was stored: computed from its rows)."""
    from .latent_stats import delta_norm_spread

    if "delta_norm_spread" in table:
        return table["delta_norm_spread"]
    return delta_norm_spread([r["delta_norm"] for r in table["latents"] if r["count"] > 0], table["threshold"])


def _add_spread(path: Path) -> None:
    """Store `delta_norm_spread` in a table written before it was (a resumed run's table reads like a new one)."""
    table = read_json(path)
    if "delta_norm_spread" not in table:
        write_json(path, {**table, "delta_norm_spread": delta_spread(table)})


def group_counts(acts: PairedActivations, store: LatentStore) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(group names, int64 [n_groups] valid tokens per group, int64 [n_groups, d_sae] firings per group)."""
    windows = acts.windows()
    names, group = window_groups(windows)
    tokens = np.bincount(np.repeat(group, windows.ctx_len)[valid_mask(windows).numpy().ravel()],
                         minlength=len(names))
    fired = np.zeros((len(names), store.d_sae), np.int64)
    for shard in store.iter_csr():
        rows_group = np.repeat(group[shard.window_start : shard.window_stop], store.ctx_len)  # [positions]
        m = shard.matrix.tocoo()
        np.add.at(fired, (rows_group[m.row], m.col), 1)
    return names, tokens, fired


def latent_table(acts: PairedActivations, coder: SparseCoder, store: LatentStore, layer: int,
                 threshold: float) -> dict[str, Any]:
    from .latent_stats import decoder_cosine, decoder_norms, delta_norm, delta_norm_spread, tag_latents

    delta = np.asarray(delta_norm(coder), np.float64)
    tags = [str(t) for t in tag_latents(delta, target_only=threshold, base_only=1 - threshold, shared_band=threshold)]
    cos = np.asarray(decoder_cosine(coder), np.float64)
    change = decoder_change(coder)
    norms = decoder_norms(coder).numpy()  # [d_sae, 2], each model in its normalised units
    counts = store.stats()["counts"]
    names, group_tokens, fired = group_counts(acts, store)
    rate = fired / np.maximum(group_tokens, 1)[:, None]  # [n_groups, d_sae]
    alive = counts > 0
    scaling = _scaling(acts, coder, layer, tags, counts)
    rows = []
    for j in range(coder.d_sae):
        s = scaling.get(j, {})
        rows.append({"latent": j, "delta_norm": float(delta[j]), "tag": tags[j], "decoder_cosine": float(cos[j]),
                     "decoder_change": float(change[j]), "base_norm": float(norms[j, 0]),
                     "target_norm": float(norms[j, 1]), "count": int(counts[j]),
                     "frequency": float(counts[j] / max(store.n_tokens, 1)),
                     "frequency_by_group": [float(r) for r in rate[:, j]],
                     "nu_eps": s.get("nu_eps"), "nu_r": s.get("nu_r"), "artifact": s.get("artifact"),
                     "verdict": s.get("verdict")})
    tag_arr = np.array(tags)
    tested = [j for j in scaling]
    return {"layer": layer, "hookpoint": coder.cfg.hookpoint, "d_sae": coder.d_sae, "threshold": threshold,
            "n_tokens": int(store.n_tokens), "n_alive": int(alive.sum()), "n_dead": int((~alive).sum()),
            "counts": {t: int(((tag_arr == t) & alive).sum()) for t in TAGS},
            "delta_norm_spread": delta_norm_spread(delta[alive], threshold),
            "groups": names, "group_tokens": [int(n) for n in group_tokens],
            "tag_by_group": {t: [float(rate[g, (tag_arr == t) & alive].mean()) if ((tag_arr == t) & alive).any()
                                 else 0.0 for g in range(len(names))] for t in TAGS[:3]},
            "scaling": {"n_tested": len(tested), "n_genuine": sum(not scaling[j]["artifact"] for j in tested),
                        "limit": 0.3, "tested": "the most frequent exclusive latents, up to "
                                                f"{MAX_SCALING} per tag"},
            "latents": rows}


def _scaling(acts: PairedActivations, coder: SparseCoder, layer: int, tags: list[str],
             counts: np.ndarray) -> dict[int, dict[str, Any]]:
    """Latent scaling of the most frequent exclusive latents: {latent: {nu_eps, nu_r, artifact}}."""
    from .latent_stats import latent_scaling

    chosen: list[int] = []
    for tag in ("target-only", "base-only"):
        idx = [j for j in range(len(tags)) if tags[j] == tag and counts[j] > 0]
        chosen += sorted(idx, key=lambda j: -counts[j])[:MAX_SCALING]
    if not chosen:
        return {}
    result = latent_scaling(coder, lambda: acts.batches(layer, 4096), chosen)
    verdict = result.verdict
    return {j: {"nu_eps": _f(result.nu_error[i]), "nu_r": _f(result.nu_reconstruction[i]),
                "artifact": bool(verdict[i] != "genuine"), "verdict": str(verdict[i])}
            for i, j in enumerate(chosen)}


def _f(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def write_examples(store: LatentStore, windows: Any, tokenizer: Any, table: dict[str, Any],
                   named: dict[str, Any] | None, path: Path, config: Any, width: int = 24) -> dict[str, Any]:
    """Top examples (decoded pieces + activations around each peak) of the named latents, or, without
    naming, of the first latents of each group; written to `path` as {latent: [example, ...]}."""
    from ..interp.format import token_decoder
    from .naming import choose_latents

    if named is not None:
        latents = [r["latent"] for r in named["latents"]]
    else:
        latents = [l for g in choose_latents(table, config.naming, store).values() for l in g[:3]]
    decode = token_decoder(tokenizer)
    names, group = window_groups(windows)
    out: dict[str, Any] = {}
    for latent in latents:
        top = store.top_k(int(latent), config.n_report_examples)
        found = []
        for w, v, p in zip(top.windows, top.values, top.positions):
            lo = max(0, int(p) - width)
            hi = min(windows.ctx_len, int(p) + width // 3 + 1)
            ids = windows.tokens[int(w), lo:hi].tolist()
            valid = (windows.doc_index[int(w), lo:hi] >= 0).numpy()
            ids = [t for t, ok in zip(ids, valid) if ok]
            dense = store.dense(int(latent), int(w))[lo:hi][valid]
            found.append({"window": int(w), "group": names[group[int(w)]], "max": float(v),
                          "pieces": decode(ids), "activations": [round(float(a), 4) for a in dense]})
        out[str(latent)] = found
    write_json(path, out)
    return out
