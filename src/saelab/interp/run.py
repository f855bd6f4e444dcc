"""The `interp` stage: latent store → examples → explanations → scores → summary.

On disk (`workspace/interp/NAME/`, or any `out_dir`):
  run_config.json                     config, client (no secrets), store identity, versions
  examples/<latent>.json              train / test / non-activating examples; skipped.json lists the rest
  explanations/<explainer>/<latent>.json   explanation or failed=True + reason (top-tokens always)
  scores/<scorer>/<variant>/<latent>.json  per-example records; variant = explanation | top-tokens | shuffled
                                      (intruder, which shows no explanation: the first variant only)
  summary.json, summary.md            pooled metrics, both baselines, failures, best / worst latents
  control.json                        beside a random model's run, when asked (`interp.control`)
Every file is written atomically when its latent is done, so an interrupted run resumes; a
rerun redoes only failed explanations and failed records. `overwrite` names stages to redo.
A run records the hashes of the store it read (run_config.json): a rerun on a store rebuilt
since, or with another explainer, is refused unless those stages are overwritten. The run's
directory is locked while it is written.

`run` is the stage. Its two steps are public for a caller that picks its own latents and negatives
(diff naming): `draw_examples`, then `explain_and_score`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from .._io import json_safe, read_json, versions, write_json
from ..data.tokens import TokenWindows, load_token_windows
from ..errors import ArtifactError, ConfigError, choices_message
from ..latents.source import open_store
from ..latents.store import LatentStore
from ..lock import hold_directory
from ..models.random_init import base_path
from ..progress import token_progress
from ..workspace import Workspace, difference
from .clients.base import Client
from .config import InterpConfig
from .examples import ExampleFiles, LatentExamples, build_examples
from .explainers.base import Explainer, Explanation
from .explainers.top_tokens import TOP_TOKENS
from .format import token_decoder
from .negatives import NegativeSource
from .registry import make_explainer, make_scorer
from .summary import TIMINGS, write_summary

log = logging.getLogger(__name__)
STAGES = ("examples", "explanations", "scores")
EXPLAINER_FIELDS = ("explainer", "explainer_provider", "explainer_model", "max_new_tokens", "show_activations")
"""The settings an explanation is made with: a run that holds explanations made with others is not mixed."""


def interp_dir(workspace: Workspace, name: str) -> Path:
    return workspace.interp(name)


def run_problem(run_dir: Path, store: LatentStore) -> str | None:
    """Why the interp run in `run_dir` no longer describes `store` (it read a store of other weights or token
    windows: the store was rebuilt since), else None."""
    path = run_dir / "run_config.json"
    cfg = read_json(path) if path.exists() else {}
    want = {"dictionary_hash": store.cfg.get("dictionary_hash"), "tokens_hash": store.tokens_hash}
    if any(cfg.get(k) is not None and cfg.get(k) != v for k, v in want.items()):
        return f"{run_dir} explains another latent store than {store.path} holds now ({difference(cfg, want)})"
    return None


def _check_same_run(out: Path, store: LatentStore, config: InterpConfig, overwrite: tuple[str, ...]) -> None:
    """A run in `out` made from another store, or whose explanations another explainer made, is not mixed with
    this one: refused unless the stages it would mix are overwritten."""
    problem = run_problem(out, store)
    if problem and set(overwrite) != set(STAGES):
        raise ArtifactError(f"{problem}: replace the whole run with --overwrite all, or write a new one (--name).")
    path = out / "run_config.json"
    old = (read_json(path).get("config") or {}) if path.exists() else {}
    want = {k: json_safe(getattr(config, k)) for k in EXPLAINER_FIELDS}
    if old and not problem and "explanations" not in overwrite and any(old.get(k) != v for k, v in want.items()):
        raise ArtifactError(f"{out} holds explanations made with other settings ({difference(old, want)}): redo "
                            "them with --overwrite explanations, or write a new run (--name).")


def negative_source(config: InterpConfig, workspace: Workspace, dictionary: str, store: LatentStore,
                    windows: TokenWindows, tokenizer: Any, out: Path, embed: Any = None) -> Any:
    from .negatives import FaissSource, NeighbourSource

    ex = config.examples
    if ex.non_activating_source == "random":
        return NegativeSource(store, ex.example_ctx_len)
    if ex.non_activating_source == "neighbours":
        from ..cooc import CoocConfig, cooc_dir, load_cooc
        from ..cooc import run as run_cooc

        path = cooc_dir(workspace, dictionary)
        if (path / "cfg.json").exists():
            cooc = load_cooc(path)
            if any(cooc.cfg.get(k) not in (None, store.cfg.get(k)) for k in ("dictionary_hash", "tokens_hash")):
                raise ArtifactError(f"{path} counts another latent store than {store.path} holds now (rebuilt "
                                    f"since); recount it: saelab cooc -d {dictionary} -w {workspace.root} --overwrite")
        else:
            cooc = run_cooc(CoocConfig(k=min(256, store.ctx_len)), workspace, dictionary, windows)
        return NeighbourSource(store, ex.example_ctx_len, cooc, rng_seed=ex.seed)
    return FaissSource(store, ex.example_ctx_len, windows, tokenizer, out / "embeddings",
                       embedder=_EmbedAdapter(embed) if embed is not None else None)


class _EmbedAdapter:
    """A bare `texts → vectors` function dressed as an `Embedder` for the embedding cache."""

    def __init__(self, fn: Callable[[list[str]], np.ndarray], name: str = "custom") -> None:
        self.embed, self.name = fn, name


def draw_examples(config: InterpConfig, store: LatentStore, windows: TokenWindows, negatives: NegativeSource,
                  out_dir: str | Path) -> tuple[Mapping[int, LatentExamples], dict[int, str]]:
    """({latent: examples}, {latent: why it was skipped}) of `config.latents` (else the first
    `config.max_latents` latents that fire), written to `out_dir/examples/` (read back when present). The
    examples are read from there when asked (`ExampleFiles`), so memory does not grow with the latents.

    Args:
        negatives: where non-activating examples come from (`NegativeSource(store, chunk_len)`: random).

    Example:
        >>> items, skipped = draw_examples(config, store, windows, NegativeSource(store, 32), "out")
    """
    out = Path(out_dir)
    _check_same_examples(config, out)
    alive = np.flatnonzero(store.stats()["window_counts"] > 0)
    candidates = list(config.latents) if config.latents is not None else alive.tolist()
    want = config.max_latents or len(candidates)
    chosen: list[int] = []  # their examples are on disk, read back one latent at a time (`ExampleFiles`)
    skipped: dict[int, str] = {}
    for latent in candidates:
        if len(chosen) >= want:
            break
        path = out / "examples" / f"{latent}.json"
        if path.exists():
            chosen.append(int(latent))
            continue
        result = build_examples(store, windows, int(latent), config.examples, negatives)
        if isinstance(result, str):
            skipped[int(latent)] = result
            continue
        write_json(path, result.to_dict())
        chosen.append(int(latent))
    if config.latents is None and alive.size < store.d_sae:
        skipped[-1] = f"{store.d_sae - alive.size} latents never fire (not listed one by one)"
    write_json(out / "examples" / "skipped.json", {str(k): v for k, v in skipped.items()})
    log.info("examples: %d latents, %d skipped", len(chosen), len(skipped))
    return ExampleFiles(out / "examples", chosen), skipped


def _check_same_examples(config: InterpConfig, out: Path) -> None:
    """Examples on disk were drawn with this example config (else they would be silently stale)."""
    path, want = out / "examples" / "config.json", json_safe(asdict(config.examples))
    if path.exists() and read_json(path) != want:
        raise ArtifactError(f"{out} holds examples drawn with other settings ({difference(read_json(path), want)}); "
                            "rerun with --overwrite examples (or another --name).")
    write_json(path, want)


def _load_explanations(directory: Path, latents: Iterable[int]) -> dict[int, Explanation]:
    out = {}
    for latent in latents:
        path = directory / f"{latent}.json"
        if path.exists():
            out[latent] = Explanation(**read_json(path))
    return out


def add_time(out: Path, key: str, seconds: float, n_latents: int) -> None:
    """Add `seconds` spent on `n_latents` latents to `out/timings.json[key]` (summed over reruns)."""
    if n_latents <= 0:
        return
    path = out / TIMINGS
    t = read_json(path) if path.exists() else {}
    old = t.get(key, {"seconds": 0.0, "n_latents": 0})
    t[key] = {"seconds": round(old["seconds"] + seconds, 3), "n_latents": old["n_latents"] + n_latents}
    write_json(path, t)


def stage_explanations(config: InterpConfig, items: Mapping[int, LatentExamples], store: LatentStore,
                       windows: TokenWindows, tokenizer: Any, client_fn: Callable[[], Client],
                       out: Path) -> dict[str, dict[int, Explanation]]:
    """{explainer name: {latent: Explanation}} for the top-tokens baseline and the configured explainer."""
    result = {}
    for explainer in _explainers(config):
        name = explainer.name
        directory = out / "explanations" / name
        have = _load_explanations(directory, items)
        sources = explanation_sources(config, explainer, items, tokenizer) if explainer.needs_client else {}
        stale = [l for l in have if l in sources and have[l].source != sources[l]]
        if stale:
            shown = ", ".join(map(str, stale[:10])) + (" …" if len(stale) > 10 else "")
            log.warning("explanations (%s): %d made from other examples or by another model (%s); explaining them "
                        "again", name, len(stale), shown)
        todo = [l for l in items if l not in have or have[l].failed or l in stale]
        n_new, t0 = 0, time.perf_counter()
        if todo and not explainer.needs_client:  # the baseline: read from the whole store at once
            for e in explainer.explain_store(store, windows, tokenizer, todo):
                write_json(directory / f"{e.latent}.json", e.to_dict())
                have[e.latent], n_new = e, n_new + 1
        elif todo:
            # One client batch at a time, each saved as it comes: an interrupted run keeps what it
            # explained (an LLM explanation costs ~1 min on a CPU) and the bar shows the rate.
            client, decode = client_fn(), token_decoder(tokenizer)
            with token_progress(len(items), f"explaining ({name})", unit="latents",
                                done=len(items) - len(todo)) as advance:
                for i in range(0, len(todo), config.batch_size):
                    chunk = todo[i : i + config.batch_size]
                    for e in explainer.explain([items[l] for l in chunk], decode, client,
                                               config.explainer_model_max_len, config.max_new_tokens):
                        e = replace(e, source=sources[e.latent])
                        write_json(directory / f"{e.latent}.json", e.to_dict())
                        have[e.latent], n_new = e, n_new + 1
                    advance(len(chunk))
        add_time(out, f"explain/{name}", time.perf_counter() - t0, n_new)
        n_failed = sum(e.failed for e in have.values())
        log.info("explanations (%s): %d new, %d failed in all", name, n_new, n_failed)
        result[name] = have
    return result


def _explainers(config: InterpConfig) -> list[Explainer]:
    """The top-tokens baseline, then the configured explainer (once, when it is the baseline)."""
    chosen = make_explainer(config.explainer, config.show_activations)
    return list({e.name: e for e in (TOP_TOKENS, chosen)}.values())


def explanation_sources(config: InterpConfig, explainer: Explainer, items: Mapping[int, LatentExamples],
                        tokenizer: Any) -> dict[int, str]:
    """{latent: hash of (provider, model, answer length, the explainer's prompt)}: what an explanation was made from."""
    decode = token_decoder(tokenizer)
    model = json.dumps([config.explainer_provider, config.explainer_model, config.max_new_tokens])  # not the URL
    return {l: hashlib.sha256((model + json.dumps(explainer.prompt(ex, decode))).encode()).hexdigest()[:16]
            for l, ex in items.items()}


def shuffled(explanations: dict[int, Explanation], seed: int) -> dict[int, str]:
    """Each latent gets another latent's explanation (a random cyclic shift: nobody keeps their own)."""
    ok = sorted(l for l, e in explanations.items() if not e.failed)
    if len(ok) < 2:
        return {}
    perm = np.random.default_rng(seed).permutation(len(ok))
    return {ok[perm[i]]: explanations[ok[perm[(i + 1) % len(ok)]]].explanation for i in range(len(ok))}


def variant_names(config: InterpConfig) -> list[str]:
    """The variants a run scores: the explainer's (`explanation`, or `top-tokens` when it is the baseline), the
    top-tokens baseline, the shuffled baseline (measured chance)."""
    return list(dict.fromkeys([make_explainer(config.explainer).variant, TOP_TOKENS.variant, "shuffled"]))


def variant_texts(config: InterpConfig, explained: dict[str, dict[int, Explanation]]) -> dict[str, dict[int, str]]:
    """{variant: {latent: explanation text}}, in the order of `variant_names`."""
    main = explained[config.explainer]
    texts = lambda d: {l: e.explanation for l, e in d.items() if not e.failed}  # noqa: E731
    out = {make_explainer(config.explainer).variant: texts(main)}
    out[TOP_TOKENS.variant] = texts(explained[TOP_TOKENS.name])
    out["shuffled"] = shuffled(main, config.examples.seed)
    return out


def score_latent(scorer: Any, explanation: str, examples: LatentExamples, path: Path, decode: Any,
                 client_fn: Callable[[], Client | None], seed: int) -> dict[str, Any]:
    """Score one latent, reusing the successful records of an earlier run with the same explanation."""
    rng = np.random.default_rng([seed, examples.latent, len(scorer.name)])
    items = scorer.items(examples, rng)
    old = read_json(path) if path.exists() else None
    if old is not None and (old["explanation"] != explanation or len(old["records"]) != len(items)):
        old = None
    todo = [i for i in range(len(items)) if old is None or old["records"][i]["failed"]]
    if not todo:
        return {**old, "n_new": 0}
    records = old["records"] if old is not None else [None] * len(items)
    client = client_fn() if scorer.needs_client else None
    for i, r in zip(todo, scorer.score(explanation, [items[i] for i in todo], decode, client)):
        records[i] = r
    doc = {"latent": examples.latent, "scorer": scorer.name, "explanation": explanation, "records": records}
    write_json(path, doc)
    return {**doc, "n_new": len(todo)}


def stage_scores(config: InterpConfig, items: Mapping[int, LatentExamples], texts: dict[str, dict[int, str]],
                 tokenizer: Any, client_fn: Callable[[], Client], out: Path, embed: Any = None) -> None:
    decode = token_decoder(tokenizer)
    for name in config.scorers:
        scorer = make_scorer(name, config)
        if name == "embedding" and embed is not None:
            scorer._embed = embed
        # chance (shuffled) right after the explanations, the top-tokens baseline last: a run stopped part-way
        # (its partial summary) can already say whether the explanations beat chance
        for variant in sorted(texts, key=lambda v: v == TOP_TOKENS.variant):
            by_latent = texts[variant]
            if not scorer.uses_explanation:  # shown no explanation (intruder): every latent once, main variant
                by_latent = {latent: "" for latent in items}
            todo = [latent for latent in by_latent if latent in items]
            n_scored, t0 = 0, time.perf_counter()
            with token_progress(len(todo), f"{name} / {variant}", unit="latents") as advance:
                for latent in todo:
                    doc = score_latent(scorer, by_latent[latent], items[latent],
                                       out / "scores" / name / variant / f"{latent}.json", decode, client_fn,
                                       config.examples.seed)
                    n_scored += doc["n_new"] > 0
                    (advance if doc["n_new"] else advance.skip)(1)  # a score read back is no part of the rate
            add_time(out, f"score/{name}/{variant}", time.perf_counter() - t0, n_scored)
            log.info("scores: %s / %s done for %d latents", name, variant, len(by_latent))
            if not scorer.uses_explanation:
                break


def load_subject_tokenizer(store: LatentStore) -> Any:
    from transformers import AutoTokenizer

    recorded = (store.cfg.get("model") or {}).get("path")
    path = base_path(recorded) if recorded else recorded  # a random model's tokenizer is its base model's
    if not path or not Path(path).exists():
        raise ArtifactError(f"the latent store {store.path} does not name a model directory with a tokenizer "
                            f"(model.path = {recorded!r}); pass tokenizer= to run().")
    return AutoTokenizer.from_pretrained(path)


def run(config: InterpConfig, workspace: Workspace, dictionary: str, *, name: str | None = None,
        out_dir: str | Path | None = None, client: Client | Callable[[], Client] | None = None,
        tokenizer: Any = None, embed: Callable[[list[str]], np.ndarray] | None = None,
        overwrite: Iterable[str] = ()) -> Path:
    """Explain and score the latents of `workspace/latents/<dictionary>`; returns the output directory.

    Args:
        client: a `Client`, or a function that builds one (called only if an LLM is needed);
            default: built from `config` (`make_client`).
        tokenizer: the subject model's tokenizer (default: the one the store was cached with).
        embed: texts → unit vectors for the embedding scorer / FAISS (default all-MiniLM-L6-v2).
        overwrite: stages to redo: any of examples, explanations, scores, or all.

    A run made from another store (rebuilt since) is refused unless `overwrite` is all; explanations made with
    another explainer are refused unless it holds explanations.

    Example:
        >>> run(InterpConfig(max_latents=20), Workspace.at("ws"), "full", name="quick")
    """
    overwrite = STAGES if "all" in overwrite else tuple(overwrite)
    bad = [s for s in overwrite if s not in STAGES]
    if bad:
        raise ConfigError(choices_message("overwrite", bad, (*STAGES, "all")))
    out = Path(out_dir) if out_dir is not None else interp_dir(workspace, name or dictionary)
    lock = workspace.lock("interp", out.name) if out_dir is None else hold_directory(out)
    with lock:
        return _run_locked(config, workspace, dictionary, out, client, tokenizer, embed, overwrite)


def _run_locked(config: InterpConfig, workspace: Workspace, dictionary: str, out: Path, client: Any, tokenizer: Any,
                embed: Any, overwrite: tuple[str, ...]) -> Path:
    store = open_store(workspace, dictionary)
    windows = load_token_windows(workspace.tokens)
    _check_same_run(out, store, config, overwrite)
    tokenizer = tokenizer if tokenizer is not None else load_subject_tokenizer(store)
    for stage in overwrite:
        shutil.rmtree(out / stage, ignore_errors=True)
    if overwrite:  # a comparison with the random-model control (interp.control) of what is redone now
        (out / "control.json").unlink(missing_ok=True)
    if set(overwrite) == set(STAGES):
        (out / TIMINGS).unlink(missing_ok=True)
    negatives = negative_source(config, workspace, dictionary, store, windows, tokenizer, out, embed)
    items, skipped = draw_examples(config, store, windows, negatives, out)
    write_json(out / "run_config.json", _run_config(config, store, dictionary, None))
    try:
        done = explain_and_score(config, items, skipped, store, windows, out, tokenizer=tokenizer, client=client,
                                 embed=embed)
    except KeyboardInterrupt:
        n_explained = sum(1 for _ in (out / "explanations").glob("*/*.json"))
        n_scored = sum(1 for _ in (out / "scores").glob("*/*/*.json"))
        log.warning("interrupted: %s keeps %d explanations and %d latent scores of %d latents (a rerun of the same "
                    "command resumes there)", out, n_explained, n_scored, len(items))
        raise
    write_json(out / "run_config.json", _run_config(config, store, dictionary, done.client))
    return out


class Interpretation(NamedTuple):
    """What `explain_and_score` made (all of it is on disk under its `out_dir` too)."""

    explained: dict[str, dict[int, Explanation]]
    """{explainer name: {latent: Explanation}}: the configured explainer's and the top-tokens baseline's."""
    texts: dict[str, dict[int, str]]
    """{variant: {latent: explanation text}} of the variants scored."""
    summary: dict[str, Any] | None
    """summary.json (None when no variant was scored)."""
    client: Client | None
    """The client made on the way (None when no LLM was needed)."""


def explain_and_score(config: InterpConfig, items: Mapping[int, LatentExamples], skipped: dict[int, str],
                      store: LatentStore, windows: TokenWindows, out_dir: str | Path, *, tokenizer: Any,
                      client: Client | Callable[[], Client] | None = None,
                      embed: Callable[[list[str]], np.ndarray] | None = None,
                      variants: Sequence[str] | None = None) -> Interpretation:
    """Explain the latents of `items` (the configured explainer and the top-tokens baseline), score `variants`
    with `config.scorers` and write the summary, under `out_dir` (the layout of this module's docstring). Work
    on disk from an earlier call with the same settings is reused; interrupted scoring leaves a partial summary.

    Args:
        items: {latent: examples} from `draw_examples` (or some of them).
        skipped: {latent: why it has no examples}, listed in the summary.
        tokenizer: the subject model's tokenizer.
        client: a `Client`, or a function that builds one (called only if an LLM is needed);
            default: built from `config` (`make_client`).
        embed: texts → unit vectors for the embedding scorer (default all-MiniLM-L6-v2).
        variants: which of `variant_names(config)` to score (default: all); none: explain only, write no summary.

    Example:
        >>> items, skipped = draw_examples(config, store, windows, NegativeSource(store, 32), "out")
        >>> done = explain_and_score(config, items, skipped, store, windows, "out", tokenizer=tok)
        >>> done.summary["scores"]["detection"]["explanation"]["pooled"]["auc"]
    """
    names = variant_names(config)
    bad = [v for v in variants or () if v not in names]
    if bad:
        raise ConfigError(choices_message("variants", bad, names))
    out, client_fn = Path(out_dir), _client_factory(config, client)
    explained = stage_explanations(config, items, store, windows, tokenizer, client_fn, out)
    texts = {v: t for v, t in variant_texts(config, explained).items() if variants is None or v in variants}
    if not texts:
        return Interpretation(explained, texts, None, _made(client_fn))
    try:
        stage_scores(config, items, texts, tokenizer, client_fn, out, embed)
    except KeyboardInterrupt:  # Ctrl-C during hours of scoring: keep a summary of what was scored
        write_summary(out, config, items, skipped, explained, texts, partial=True)
        log.warning("interrupted: wrote a partial summary to %s; rerun to finish", out / "summary.md")
        raise
    summary = write_summary(out, config, items, skipped, explained, texts)
    return Interpretation(explained, texts, summary, _made(client_fn))


def _made(client_fn: Any) -> Client | None:
    return client_fn.made[0] if client_fn.made else None


def _client_factory(config: InterpConfig, client: Any) -> Callable[[], Client]:
    made: list[Client] = []

    def get() -> Client:
        if not made:
            made.append(client() if callable(client) and not isinstance(client, Client) else
                        client if client is not None else make_client(config))
        return made[0]

    get.made = made  # type: ignore[attr-defined]
    return get


def _run_config(config: InterpConfig, store: LatentStore, dictionary: str, client: Client | None) -> dict:
    described = client.describe() if client is not None else ({"provider": config.explainer_provider,
                                                               "model": config.explainer_model,
                                                               "note": "not loaded this run"})
    return {"artifact": "interp", "dictionary": dictionary, "store": str(store.path),
            "model": (store.cfg.get("model") or {}).get("path"),
            "tokens_hash": store.tokens_hash, "dictionary_hash": store.cfg.get("dictionary_hash"),
            "hookpoint": store.cfg.get("hookpoint"), "dictionary_source": store.cfg.get("dictionary_source"),
            "config": asdict(config),
            "client": described, "versions": versions()}


def make_client(config: InterpConfig) -> Client:
    """The client the config names (the in-process model is loaded here)."""
    from .clients import OpenAIClient, OpenRouterClient, TransformersClient

    kw = dict(api_key_env=config.api_key_env, timeout_s=config.timeout_s, max_retries=config.max_retries,
              concurrency=config.batch_size, backoff_s=config.retry_backoff_s)
    if config.explainer_provider == "openrouter":
        return OpenRouterClient(config.explainer_model, base_url=config.base_url,
                                **{**kw, "api_key_env": config.api_key_env if config.api_key_env != "OPENAI_API_KEY"
                                   else "OPENROUTER_API_KEY"})
    if config.explainer_provider == "openai":
        if not config.base_url:
            raise ConfigError("base_url: the openai provider needs the server's URL, e.g. http://127.0.0.1:8080/v1.")
        return OpenAIClient(config.base_url, config.explainer_model, **kw)
    from .explainer_model import load_explainer

    return TransformersClient(load_explainer(config.explainer_model, config.dtype), config.batch_size,
                              config.explainer_model_max_len)
