"""Naming: explain and detection-score the crosscoder latents a diff cares about.

Which latents: the target-only and base-only ones (by their Δnorm tag; those that pass the
latent-scaling test first, then the most frequent), and the most-changed others, ranked by how
far their Δnorm leans from 0.5 (|Δnorm − 0.5|: one model's half grew relative to the other's),
then by their decoder change ‖d_target − d_base‖ / max(‖d_base‖, ‖d_target‖). A latent needs
`min_examples` activating windows to be a candidate (rare latents lean by noise).

How: saelab's auto-interp (`saelab.interp`) on a latent store of the crosscoder's latents
over the paired windows. Examples are text where the latent fires; the latent reads both
models at once, so each example is evidence of both. The explainer is

- an LLM (`qwen2.5-coder-1.5b`, the embedded one, ~1 min per latent on 2 cores; or
  `smollm2-135m`, fast but poor; or any model spec) which also judges detection
  (log-prob P(yes), scored on held-out activating and non-activating examples, beside a
  shuffled-explanation baseline = measured chance); or
- `top-tokens` (no LLM): the latent's most frequent tokens. Its detection score comes from
  a rule, not a judge: "the text contains one of the top tokens". Reports label it so.

`auto` picks the embedded Qwen when it can be found (packages or the assembled GGUF in the
cache) and `top-tokens` otherwise, so a fresh clone without the 1.1 GB packages still runs.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import read_json, versions, write_json
from ..data.tokens import TokenWindows
from ..errors import ConfigError
from ..interp import (
    TOP_TOKENS,
    Client,
    ExampleConfig,
    InterpConfig,
    LatentExamples,
    NegativeSource,
    draw_examples,
    explain_and_score,
)
from ..interp.load import read_records
from ..interp.metrics import classification
from ..latents.store import LatentStore

log = logging.getLogger(__name__)

AUTO = "auto"
GROUPS = ("target-only", "base-only", "most-changed")
NAMED_FILE = "named.json"
NAMING_EXAMPLES = ExampleConfig(n_examples_train=12, n_examples_test=10, n_non_activating=10, min_examples=12)
"""Fewer examples than an interp run's defaults: a diff names a handful of latents, often on a CPU."""


@dataclass(frozen=True)
class NamingConfig:
    """Which latents are named, by what, on how many examples."""

    explainer: str = AUTO
    """`auto` (the embedded Qwen2.5-Coder-1.5B if installed, else `top-tokens`), `top-tokens` (no LLM),
    `qwen2.5-coder-1.5b`, `smollm2-135m`, or any model spec `load_model` takes."""
    n_target_only: int = 4
    """Target-only latents to name (most frequent first)."""
    n_base_only: int = 2
    """Base-only latents to name."""
    n_changed: int = 4
    """Most-changed non-exclusive latents to name (largest decoder change first)."""
    examples: ExampleConfig = NAMING_EXAMPLES
    """How examples are cut (interp's): `n_examples_train` shown to the explainer, `n_examples_test` held-out
    activating and `n_non_activating` silent text chunks for detection; a latent needs `min_examples`
    activating chunks to be named at all."""
    max_new_tokens: int = 40
    batch_size: int = 8
    dtype: str = "auto"
    """Dtype of an LLM explainer."""
    def __post_init__(self) -> None:
        for name in ("n_target_only", "n_base_only", "n_changed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: got {getattr(self, name)}; expected ≥ 0.")
        for name in ("max_new_tokens", "batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: got {getattr(self, name)}; expected a positive integer.")


def resolve_explainer(spec: str) -> str:
    """The explainer `spec` stands for (`auto`: the embedded Qwen if installed, else top-tokens)."""
    from ..interp.explainer_model import EMBEDDED_EXPLAINER, embedded_explainer_available

    if spec != AUTO:
        return spec
    return EMBEDDED_EXPLAINER if embedded_explainer_available() else TOP_TOKENS.name


def choose_latents(table: dict[str, Any], config: NamingConfig, store: LatentStore) -> dict[str, list[int]]:
    """{group: latents to name}, each group ordered as the module docstring says."""
    rows = table["latents"]
    counts = store.stats()["window_counts"]
    enough = lambda r: counts[r["latent"]] >= config.examples.min_examples  # noqa: E731
    # latents that pass latent scaling (genuinely exclusive) first, then by how often they fire
    by_count = lambda rs: sorted(rs, key=lambda r: (r.get("artifact") is True, -int(counts[r["latent"]]),  # noqa: E731
                                                    r["latent"]))
    groups = {
        "target-only": by_count([r for r in rows if r["tag"] == "target-only" and enough(r)]),
        "base-only": by_count([r for r in rows if r["tag"] == "base-only" and enough(r)]),
        "most-changed": sorted([r for r in rows if r["tag"] in ("shared", "other") and enough(r)],
                               key=lambda r: (-abs(r["delta_norm"] - 0.5), -r["decoder_change"], r["latent"])),
    }
    want = {"target-only": config.n_target_only, "base-only": config.n_base_only, "most-changed": config.n_changed}
    # a few spares per group: some candidates have too few examples and are skipped
    return {g: [r["latent"] for r in rs[: 3 * want[g]]] for g, rs in groups.items() if want[g]}


class TextNegatives(NegativeSource):
    """Random silent chunks of text: chunks that are mostly padding (prompt windows) are never drawn."""

    name = "random"

    def __init__(self, store: LatentStore, chunk_len: int, windows: TokenWindows) -> None:
        super().__init__(store, chunk_len)
        per = store.ctx_len // chunk_len
        valid = (windows.doc_index[: store.n_windows, : per * chunk_len] >= 0).numpy()
        self.text_chunks = np.flatnonzero(valid.reshape(store.n_windows * per, chunk_len).mean(1) >= 0.5)

    def pick(self, latent, chunks, train, n, rng):  # type: ignore[override]
        silent = np.setdiff1d(self.text_chunks, chunks.ids)
        return np.sort(rng.choice(silent, size=min(n, silent.size), replace=False)).astype(np.int64), self.name


def name_features(store: LatentStore, windows: TokenWindows, tokenizer: Any, table: dict[str, Any],
                  out_dir: str | Path, config: NamingConfig = NamingConfig(), *,
                  client: Any = None) -> dict[str, Any]:
    """Explain and detection-score the chosen latents; write `out_dir/named.json` and return it.

    Args:
        store: the crosscoder's latent store over `windows` (see `pipeline.encode_latents`).
        table: the latent table (`features/layer_LL/latent_table.json`).
        client: an interp `Client` (or a function making one) to use instead of loading the explainer.

    Returns:
        {"explainer": resolved name, "kind": "llm" | "top-tokens", "latents": [{latent, group, explanation,
        detection {f1, precision, recall, balanced_accuracy, auc, n_examples, n_failed}, shuffled_detection,
        failed, reason}], "skipped": {latent: why}, "pooled": {...}}

    Example:
        >>> named = name_features(store, windows, lm.tokenizer, table, "features/layer_06/naming")
        >>> named["latents"][0]["explanation"], named["latents"][0]["detection"]["f1"]
    """
    out = Path(out_dir)
    explainer = resolve_explainer(config.explainer)
    no_llm = explainer == TOP_TOKENS.name
    groups = choose_latents(table, config, store)
    order = [l for g in GROUPS for l in groups.get(g, [])]
    interp = InterpConfig(examples=config.examples, latents=tuple(dict.fromkeys(order)),
                          explainer=TOP_TOKENS.name if no_llm else "default",
                          explainer_model="none" if no_llm else explainer, scorers=("detection",),
                          batch_size=config.batch_size, max_new_tokens=config.max_new_tokens, dtype=config.dtype)
    identity = {"dictionary_hash": store.cfg.get("dictionary_hash"), "tokens_hash": store.tokens_hash}
    _check_same_run(out, config, explainer, identity)
    if (out / NAMED_FILE).exists():
        return read_json(out / NAMED_FILE)  # finished with these settings on this store
    negatives = TextNegatives(store, interp.examples.example_ctx_len, windows)
    found, skipped = draw_examples(interp, store, windows, negatives, out)
    kept = _keep(groups, found, config)
    items = {l: found[l] for g in kept.values() for l in g}
    # an LLM's explanations are judged beside shuffled ones (measured chance); top-tokens is scored by a rule below
    done = explain_and_score(interp, items, skipped, store, windows, out, tokenizer=tokenizer, client=client,
                             variants=() if no_llm else ("explanation", "shuffled"))
    scores = _token_match_scores(items, out) if no_llm else _judge_scores(out, items, done.texts)
    named = _named(explainer, kept, done.explained[interp.explainer], scores, skipped, items)
    write_json(out / "run_config.json", {"artifact": "diff_naming", "config": asdict(config),
                                         "explainer": explainer, "interp_config": _jsonable(asdict(interp)),
                                         "store_identity": identity,
                                         "client": _describe(done.client), "store": str(store.path),
                                         "versions": versions()})
    write_json(out / NAMED_FILE, named)  # last: its presence means the stage is done
    return named


def _keep(groups: dict[str, list[int]], items: dict[int, LatentExamples], config: NamingConfig) -> dict[str, list[int]]:
    """The first latents of each group that have examples, up to the group's quota; a latent named once."""
    want = {"target-only": config.n_target_only, "base-only": config.n_base_only, "most-changed": config.n_changed}
    seen: set[int] = set()
    out = {}
    for g, latents in groups.items():
        out[g] = [l for l in latents if l in items and l not in seen][: want[g]]
        seen.update(out[g])
    return out


def _check_same_run(out: Path, config: NamingConfig, explainer: str, identity: dict[str, Any]) -> None:
    """A rerun with other naming settings, or on another store, starts over (explanations would mix)."""
    import shutil

    cfg = out / "run_config.json"
    if cfg.exists():
        old = read_json(cfg)
        if old.get("config") != _jsonable(asdict(config)) or old.get("explainer") != explainer or \
                old.get("store_identity") != identity:
            log.info("naming settings changed: %s starts over", out)
            shutil.rmtree(out)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(d))


def _describe(client: Client | None) -> dict[str, Any]:
    return client.describe() if client is not None else {"provider": "none", "note": "no LLM was loaded this run"}


def _judge_scores(out: Path, items: dict[int, LatentExamples], texts: dict[str, dict[int, str]]) -> dict:
    """{latent: {variant: detection records}} from the interp score files ([] where none were written)."""
    return {latent: {v: read_records(out, "detection", v, latent) for v in texts} for latent in items}


def _token_match_scores(items: dict[int, LatentExamples], out: Path, n_top: int = 3) -> dict:
    """Detection without an LLM: predict "fires" when an example holds one of the latent's `n_top` most
    frequent firing tokens (counted on its training examples only, so the test stays held out)."""
    found = {}
    for latent, ex in items.items():
        counts: dict[int, int] = {}
        for e in ex.train:
            for t, a in zip(e.tokens, e.activations):
                if a > 0:
                    counts[t] = counts.get(t, 0) + 1
        top = set(sorted(counts, key=lambda t: (-counts[t], t))[:n_top])
        records = [{"label": label, "prediction": int(bool(top & set(e.tokens))), "failed": False,
                    "probability": None, "window": e.window, "start": e.start}
                   for label, exs in ((1, ex.test), (0, ex.non_activating)) for e in exs]
        write_json(out / "scores" / "token-match" / f"{latent}.json", {"latent": latent, "top_tokens": sorted(top),
                                                                      "records": records})
        found[latent] = {TOP_TOKENS.variant: records}
    return found


def _named(explainer: str, kept: dict[str, list[int]], explained: dict, scores: dict, skipped: dict,
           items: dict[int, LatentExamples]) -> dict[str, Any]:
    rows = []
    no_llm = explainer == TOP_TOKENS.name
    main = TOP_TOKENS.variant if no_llm else "explanation"
    for group, latents in kept.items():
        for latent in latents:
            e = explained.get(latent)
            s = scores.get(latent, {})
            rows.append({"latent": latent, "group": group, "explanation": e.explanation if e else None,
                         "failed": bool(e.failed) if e else True, "reason": e.reason if e else "not explained",
                         "detection": _metrics(s.get(main)), "shuffled_detection": _metrics(s.get("shuffled")),
                         "n_activating_examples": items[latent].n_activating})
    pooled = {v: _metrics([r for s in scores.values() for r in s.get(v, [])]) for v in (main, "shuffled")}
    return {"explainer": explainer, "kind": TOP_TOKENS.name if no_llm else "llm",
            "detection_method": ("token match: the text holds one of the latent's 3 most frequent firing tokens "
                                 "(no LLM)") if no_llm else f"LLM judge ({explainer}), P(yes) from log-probs",
            "latents": rows, "skipped": {str(k): v for k, v in skipped.items()}, "pooled": pooled}


def _metrics(records: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """Detection metrics of scored records (None without records)."""
    if not records:
        return None
    m = classification(records)
    return {k: m[k] for k in ("f1", "precision", "recall", "balanced_accuracy", "auc", "n_examples", "n_failed")}


def load_named(out_dir: str | Path) -> dict[str, Any] | None:
    path = Path(out_dir) / NAMED_FILE
    return read_json(path) if path.exists() else None


__all__ = ["AUTO", "GROUPS", "NamingConfig", "choose_latents", "load_named", "name_features", "resolve_explainer"]
