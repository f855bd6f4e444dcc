"""A tiny synthetic workspace with every stage the report renders: two dictionaries with latent
stores (one the other's superset), real co-occurrence and matching runs, and auto-interp and
SFAL artifacts in their stages' on-disk layout. Corpus tokens include HTML that must not run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from saelab.coders import CoderConfig, SparseCoder
from saelab.cooc import run as cooc_run
from saelab.cooc.config import CoocConfig
from saelab.cooc.synthetic import write_workspace, zipf_entries
from saelab.match import MatchConfig
from saelab.match import run as match_run
from saelab.match.families import Family
from saelab.report import ModelView
from saelab.workspace import Workspace

SCRIPT = "<script>window.__xss = 1</script>"
IMG = '<img src=x onerror="window.__xss = 2">'
WORDS = ["the", "of", "and", "to", "in", SCRIPT, IMG, " river", " bank", " money", " water", " king", " city",
         "\n", " music", " war", " film", " church", " world", " state", " people", " year", " time", " day"]
VOCAB, D_IN, N_WINDOWS, CTX = len(WORDS), 16, 24, 32
SIZES = {"narrow": 24, "wide": 48}


def model_view(seed: int = 0) -> ModelView:
    """Words as tokens (two of them HTML) and a random unembedding [VOCAB, D_IN]."""
    g = torch.Generator().manual_seed(seed)
    return ModelView(lambda i: WORDS[i], torch.randn(VOCAB, D_IN, generator=g), "synthetic words")


def _coders(seed: int) -> dict[str, SparseCoder]:
    torch.manual_seed(seed)
    narrow = SparseCoder(CoderConfig("topk", d_in=D_IN, d_sae=SIZES["narrow"], k=4, hookpoint="model.layers.1"))
    wide = SparseCoder(CoderConfig("topk", d_in=D_IN, d_sae=SIZES["wide"], k=4, hookpoint="model.layers.1"))
    with torch.no_grad():
        wide.W_dec[: SIZES["narrow"]] = narrow.W_dec  # the first half of wide = narrow: one-to-one partners
    return {"narrow": narrow, "wide": wide}


def make_workspace(root: Path, seed: int = 0) -> Workspace:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, size=(N_WINDOWS, CTX))
    tokens[:, 3::7] = WORDS.index(SCRIPT)
    tokens[:, 5::9] = WORDS.index(IMG)
    doc, entries = zipf_entries(N_WINDOWS, CTX, SIZES["narrow"], l0=4, doc_len=64, topic_size=4, seed=seed)
    extra = np.c_[entries[:, :2], entries[:, 2] + SIZES["narrow"]][rng.random(len(entries)) < 0.3]
    ws = write_workspace(root, tokens, doc, entries, SIZES["narrow"], name="narrow", shard_windows=8)
    write_workspace(root, tokens, doc, np.r_[entries, extra], SIZES["wide"], name="wide", shard_windows=8)
    for name, coder in _coders(seed).items():
        coder.save(ws.dictionary(name))
        cooc_run(CoocConfig(k=16, top_k=8), ws, name)
    match_run(MatchConfig(), ws, "wide", "narrow")
    _add_family(ws.root / "match" / "wide__narrow" / "families.json")
    _interp(ws, "narrow", latents=range(0, 12))
    _sfal(ws, "narrow")
    return ws


def _add_family(path: Path) -> None:
    """A family in the match stage's own schema (the random synthetic dictionaries have none)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["families"].append(Family(parent=3, members=[30, 31], weights=[0.6, 0.5], member_cosines=[0.8, 0.7],
                                  recon_cosine=0.95, best_single_cosine=0.8).to_dict())
    path.write_text(json.dumps(doc), encoding="utf-8")


def _write(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def _interp(ws: Workspace, name: str, latents: range) -> None:
    """The layout `saelab.interp.run` writes: explanations/<explainer>/, scores/<scorer>/<variant>/,
    per_latent.json, summary.json; latent 0's explanation carries a script, latent 1 failed."""
    d = ws.root / "interp" / f"{name}-run"  # a run name: the report finds it by run_config.json
    per: dict[str, dict[str, dict[str, dict]]] = {"detection": {"explanation": {}}, "fuzz": {"explanation": {}}}
    for latent in latents:
        failed = latent == 1
        text = f"{SCRIPT} mentions of rivers #{latent}" if latent == 0 else f"words about topic {latent}"
        _write(d / "explanations" / "default" / f"{latent}.json",
               {"latent": latent, "explanation": None if failed else text, "failed": failed,
                "reason": "no 'Explanation:' line in the answer" if failed else None})
        if failed:
            continue
        for s, scorer in enumerate(per):
            records = [{"kind": "activating" if i % 2 else "non_activating", "window": i, "start": 0,
                        "tokens": [5, 7, 8, i % VOCAB], "activations": [0.0, 1.0 * (i % 2), 0.0, 0.0],
                        "label": i % 2, "prediction": (i + latent) % 2, "probability": 0.5, "correct": i % 3 > 0,
                        "failed": False, "reason": None} for i in range(6)]
            _write(d / "scores" / scorer / "explanation" / f"{latent}.json",
                   {"latent": latent, "scorer": scorer, "explanation": text, "records": records})
            per[scorer]["explanation"][str(latent)] = {"auc": round(0.9 - latent / 40 + s / 20, 3),
                                                       "balanced_accuracy": 0.6}
    _write(d / "per_latent.json", per)
    pooled = {"auc": 0.7, "balanced_accuracy": 0.65, "n_failed": 0}
    _write(d / "summary.json", {"explainer": "default",
                                "scores": {s: {"explanation": {"n_latents": 11, "pooled": pooled}}
                                           for s in per}})
    _write(d / "run_config.json", {"artifact": "interp", "dictionary": name})


def _sfal(ws: Workspace, name: str) -> None:
    """scores.csv and summary.json as `saelab sfal` writes them (without running the embedder)."""
    d = ws.root / "sfal" / name
    d.mkdir(parents=True, exist_ok=True)
    model = "all-MiniLM-L6-v2"
    cols = ["latent", "explanation_kind", "explanation", "window_count", f"ndcg[{model}]", f"ndcg_baseline[{model}]"]
    with open(d / "scores.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for latent in range(SIZES["narrow"]):
            w.writerow([latent, "top-token description (no LLM)", f"top tokens: {IMG} {latent}", 10,
                        0.3 + latent / 100, 0.3])
    _write(d / "summary.json", {"aggregates": {model: {"n_scored": SIZES["narrow"], "ndcg_mean": 0.41,
                                                       "ndcg_median": 0.4, "baseline_ndcg_mean": 0.3,
                                                       "baseline_ndcg_sd": 0.01}}, "correlations": {}})


def add_evals(ws, narrow_fvu: float, pca_fvu: float) -> None:
    """A comparison of `narrow` with dense PCA at its L0 (4), on the same tokens, as `saelab compare` writes it."""
    d = ws.root / "evals" / "narrow__pca"
    common = {"tokens_hash": "t", "windows": [16, 24]}
    _write(d / "narrow_metrics.json", {**common, "dictionary": {"name": "narrow", "kind": "sae", "k": 4},
                                       "reconstruction": {"fvu": narrow_fvu, "n_tokens": 256},
                                       "sparsity": {"l0": 4.0}})
    _write(d / "pca-4_metrics.json", {**common, "dictionary": {"name": "pca-4", "kind": "dense", "method": "pca",
                                                               "k": 4, "d_in": 16},
                                      "reconstruction": {"fvu": pca_fvu, "n_tokens": 256}})
