"""`saelab autointerp MODEL SPARSE_MODEL`: explain latents in words and score the explanations.

Flags are kebab-case (`--n-tokens`, `--max-latents`, `--scorers`, …); delphi's spellings
(`--n_tokens`, `--max_latents`, …) are accepted as aliases, so its users can move over. The
workspace's latent store is reused when one exists for the dictionary; otherwise token windows
and the store are built first (the slow part).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import common as opt


def _split(values: list[str]) -> list[str]:
    return [v for item in values for v in item.replace(",", " ").split() if v]


def _latent_ids(values: list[str]) -> tuple[int, ...] | None:
    """--latents values: ids and inclusive ranges, repeated or comma-separated ("5", "20-59", "1,2,9-11")."""
    from ..errors import ConfigError

    ids: list[int] = []
    for item in _split(values):
        lo, sep, hi = item.partition("-")
        if not (lo.isdigit() and (not sep or hi.isdigit())) or (sep and int(hi) < int(lo)):
            raise ConfigError(f"latents: got {item!r}; expected latent ids and inclusive ranges, like --latents 5 "
                              "--latents 20-59 or --latents 1,2,9-11.")
        ids += range(int(lo), int(hi if sep else lo) + 1)
    return tuple(dict.fromkeys(ids)) or None


def _model_identity(spec: str) -> str:
    """One string per model: an embedded name and the directory it was converted to are one model, a path is
    resolved, and `random:M@S` is M's identity with the seed (never the trained model's)."""
    from ..models.embedded import EMBEDDED_MODELS, converted_dir
    from ..models.random_init import parse_random_spec

    if (rnd := parse_random_spec(spec)) is not None:
        return f"random:{_model_identity(rnd.model)}@{rnd.seed}"
    given = converted_dir(EMBEDDED_MODELS[spec]) if spec in EMBEDDED_MODELS else Path(spec).expanduser()
    return str(given.resolve())


def refuse_other_subject(ws, model: str, store: str) -> None:
    """A reused latent store was cached from one model (its tokens, activations and tokenizer): a MODEL argument
    that names another one (by its spec, its directory, or an embedded name whose copy is that directory) is
    refused rather than silently ignored. A random model (`random:M@SEED`) is never the trained M, nor M with
    another seed: the store's own record decides where the token windows' spec would not tell them apart."""
    from .._io import read_json_object
    from ..errors import ConfigError
    from ..models.random_init import parse_random_spec

    cfg = read_json_object(ws.latents(store) / "cfg.json", "a latent store's config")
    path = (cfg.get("model") or {}).get("path") if isinstance(cfg.get("model"), dict) else None
    tokens = ws.tokens / "cfg.json"
    spec = read_json_object(tokens, "the token windows' config").get("model") if tokens.exists() else None
    if path is None and spec is None:
        return  # the store does not say
    parse_random_spec(model, "model")  # a malformed random: spec is refused as such
    random = lambda s: parse_random_spec(s) is not None  # noqa: E731
    if path is not None and _model_identity(model) == _model_identity(path):
        return
    if spec is not None and _model_identity(model) == _model_identity(spec) \
            and (path is None or random(model) == random(path)):
        return
    cached = path if path is not None and (random(path) or random(model)) else spec or path
    raise ConfigError(f"model: got {model!r}, but the latent store {ws.latents(store)} was cached from "
                      f"{cached!r} (its tokens and activations); pass that model, or use another --workspace "
                      f"(-w) to cache the dictionary with {model!r}.")


def _ensure_store(ws, model: str, sparse_model: str, selector, dataset_repo: str, dataset_split: str,
                  dataset_column: str, cache_ctx_len: int, n_tokens: int, batch_size: int, dtype: str, emit) -> str:
    """The name of a complete latent store for SPARSE_MODEL (one hookpoint of it: `selector`), building the
    token windows and the cache if needed."""
    from .._io import read_json
    from ..coders import load_resolved, resolve_dictionary
    from ..latents.source import open_store
    from ..workspace import is_name

    def complete(name: str) -> bool:
        cfg = ws.latents(name) / "cfg.json"
        return cfg.exists() and bool(read_json(cfg).get("complete"))

    def reuse(name: str) -> str:
        refuse_other_subject(ws, model, name)
        open_store(ws, name)  # a store of weights or token windows changed since: refused, with the rebuild command
        emit(f"reusing the latent store {ws.latents(name)}")
        return name

    if is_name(sparse_model) and complete(sparse_model):  # a store by its name (it may have no dictionaries/NAME)
        return reuse(sparse_model)
    resolved = resolve_dictionary(sparse_model, workspace=ws, selector=selector)
    if complete(resolved.name):
        return reuse(resolved.name)
    from ..data.run import TokensConfig
    from ..data.run import run as run_tokens
    from ..latents.config import CacheConfig
    from ..latents.run import run as run_cache
    from ..models.load import load_model

    emit(f"no latent store for {resolved.name}: tokenizing {dataset_repo} and caching {n_tokens:,} tokens (slow)")
    lm = load_model(model, dtype=dtype)
    windows = run_tokens(TokensConfig(corpus=dataset_repo, split=dataset_split, column=dataset_column,
                                      ctx_len=cache_ctx_len, n_tokens=n_tokens), ws, lm)
    coder = load_resolved(resolved, device=lm.device, site=selector.site)
    run_cache(CacheConfig(batch_size=batch_size), ws, lm, windows, {resolved.name: coder})
    return resolved.name


def _control_run(ws, control: str, config, n_hookpoints: int) -> Path:
    """--control's run, checked before any work: one run to compare with, finished, sharing a scorer."""
    from .._io import read_json
    from ..errors import ConfigError
    from ..interp.control import find_control, setting_differences

    if n_hookpoints > 1:
        raise ConfigError("--control: compares one run with one control; give one --hookpoints value per "
                          "autointerp command.")
    run = find_control(ws, control, "--control")
    setting_differences({"scorers": list(config.scorers)}, read_json(run / "run_config.json").get("config") or {},
                        "--control")
    return run


def _write_control(ws, out: Path, control: Path, seed: int, arg: str) -> None:
    """Compare the run `out` with `control` and write the comparison into `out`, under the run's lock."""
    from ..interp.control import compare_runs, write_control
    from ..lock import hold_directory
    from ..workspace import is_name

    inside = is_name(out.name) and out.resolve() == ws.interp(out.name).resolve()
    with ws.lock("interp", out.name) if inside else hold_directory(out):
        write_control(out, compare_runs(out, control, seed=seed, arg=arg))


def _group_summary(out: Path, spec: str, runs: dict[str, Path]) -> Path:
    """One summary over the runs of several hookpoints: each run's summary under its hookpoint's heading."""
    from .._io import versions, write_cfg, write_text

    parts = [f"# Auto-interpretation of {spec}: {len(runs)} hookpoints\n",
             "One latent store and one run per hookpoint; each section is that run's summary.\n",
             "| hookpoint | run |", "|---|---|"]
    parts += [f"| {hp} | `{run}` |" for hp, run in runs.items()]
    for hp, run in runs.items():
        text = (run / "summary.md").read_text() if (run / "summary.md").exists() else "(no summary written)\n"
        body = "\n".join(("#" + line) if line.startswith("#") else line for line in text.splitlines())
        parts += ["", f"## {hp}", "", body]
    write_text(out / "summary.md", "\n".join(parts) + "\n")
    write_cfg(out, {"artifact": "interp-group", "dictionary": spec, "runs": {hp: str(r) for hp, r in runs.items()},
                    "versions": versions()})
    return out


def register(app: typer.Typer) -> None:
    @app.command()
    def autointerp(
        model: str = typer.Argument("smollm2-135m", help="The subject model whose latents are explained."),
        sparse_model: str = typer.Argument(..., help="Dictionary: a name in the workspace (its latent store is "
                                           "reused), a path (or a downloaded tree, with the selectors), a Hub repo "
                                           "org/name(/PATH)(@REVISION) as delphi takes it, or saelens:RELEASE/ID."),
        hookpoints: list[str] = typer.Option([], "--hookpoints", help="Hookpoints of a multi-hookpoint dictionary "
                                             "(a sparsify repo or run: one folder per hookpoint) to explain, space- "
                                             "or comma-separated; one store and one run per hookpoint, and one "
                                             "summary over all in interp/NAME."),
        n_tokens: int = opt.with_snake_alias(
            1_000_000, "--n-tokens",
            help="Tokens to cache when no store exists. More tokens: more examples per latent, slower cache (~2k "
                 "tok/s on CPU)."),
        max_latents: Optional[int] = opt.with_snake_alias(
            None, "--max-latents",
            help="Explain the first N latents with enough examples. Time grows linearly with it."),
        latents: list[str] = typer.Option([], "--latents", help="Explicit latent ids and inclusive ranges, "
                                          "repeatable or comma-separated (5, 20-59, 1,2,9-11); with --max-latents, "
                                          "the first N of them with enough examples. Slices of one dictionary "
                                          "run as separate --name runs pool with `saelab autointerp-merge`."),
        scorers: list[str] = typer.Option(["detection", "fuzz", "embedding"], "--scorers", help="detection, fuzz, "
                                          "recall (LLM: one forward per example per variant), simulation (predicts "
                                          "0-10 per token, Pearson r; one forward per example with ~4x detection's "
                                          "tokens; API: one generated list per example, slower), intruder (pick "
                                          "the odd text among --n-intruder-examples; one forward per "
                                          "non-activating example with N texts, once per latent), surprisal (two "
                                          "forwards per example; in-process only) and embedding (cheap)."),
        explainer: str = typer.Option("default", "--explainer", help="default | default-tally (adds the marked "
                                      "tokens counted over the examples; same speed) | default-fewshot (adds worked "
                                      "examples, which small explainers copy) | contrastive | top-tokens (no LLM, "
                                      "seconds)."),
        explainer_model: str = opt.with_snake_alias(
            "qwen2.5-coder-1.5b", "--explainer-model",
            help="Embedded qwen2.5-coder-1.5b (default; 11x the parameters of smollm2-135m), smollm2-135m (quick, "
                 "explains poorly), a directory, .gguf, or a server's model."),
        explainer_provider: str = opt.with_snake_alias(
            "transformers", "--explainer-provider",
            help="transformers (in-process, log-prob scoring) | openai (any compatible server) | openrouter."),
        base_url: Optional[str] = opt.with_snake_alias(
            None, "--base-url",
            help="Server URL for openai, e.g. http://127.0.0.1:8080/v1."),
        api_key_env: str = opt.with_snake_alias(
            "OPENAI_API_KEY", "--api-key-env",
            help="Environment variable holding the API key (never written anywhere)."),
        explainer_model_max_len: int = opt.with_snake_alias(
            4096, "--explainer-model-max-len",
            help="Longest prompt; training examples are dropped to fit. Longer: slower."),
        num_examples_per_scorer_prompt: int = opt.with_snake_alias(
            1, "--num-examples-per-scorer-prompt",
            help="Examples per detection/fuzz/recall prompt. 1: log-prob yes/no per example (in-process). N > 1: one "
                 "generated list like [1, 0, 1] per N examples (fewer API calls; no AUC; a bad list fails all N)."),
        n_intruder_examples: int = opt.with_snake_alias(
            5, "--n-intruder-examples",
            help="Texts per intruder question (2-9; chance = 1/N). Prompt length grows with it."),
        dataset_repo: str = opt.with_snake_alias(
            "mixed-en", "--dataset-repo",
            help="Corpus for a new cache: embedded name, path, or HF dataset."),
        dataset_split: str = opt.with_snake_alias(
            "train", "--dataset-split",
            help="Split of --dataset-repo."),
        dataset_column: str = opt.with_snake_alias(
            "text", "--dataset-column",
            help="Text column of --dataset-repo."),
        batch_size: int = opt.with_snake_alias(
            8, "--batch-size",
            help="Prompts per forward (transformers) or requests in flight (openai); windows per forward when "
                 "caching."),
        cache_ctx_len: int = opt.with_snake_alias(
            256, "--cache-ctx-len",
            help="Tokens per cached window (new cache)."),
        min_examples: int = opt.with_snake_alias(
            200, "--min-examples",
            help="Latents with fewer activating examples are skipped and listed. Lower it for small stores."),
        n_examples_train: int = opt.with_snake_alias(
            40, "--n-examples-train",
            help="Examples shown to the explainer (prompt length, so explain time, grows with it)."),
        train_type: str = opt.with_snake_alias(
            "top", "--train-type",
            help="Examples shown to the explainer: top (strongest; the clearest pattern) | random | quantiles "
                 "(stratified by activation, as the test set) | mix."),
        n_examples_test: int = opt.with_snake_alias(
            50, "--n-examples-test",
            help="Held-out activating examples scored (disjoint from training). Scoring time grows with it."),
        n_non_activating: int = opt.with_snake_alias(
            50, "--n-non-activating",
            help="Non-activating examples scored."),
        example_ctx_len: int = opt.with_snake_alias(32, "--example-ctx-len", help="Tokens per example."),
        center_examples: bool = opt.with_snake_alias(
            True, "--center-examples/--no-center-examples",
            help="Centre examples on their maximum."),
        non_activating_source: str = opt.with_snake_alias(
            "random", "--non-activating-source",
            help="random | neighbours (co-occurring latents; builds sparse cooc once) | FAISS (embedding nearest; "
                 "embeds every chunk once, cached)."),
        filter_bos: bool = opt.with_snake_alias(
            True, "--filter-bos/--no-filter-bos",
            help="Drop activations on BOS/special tokens."),
        show_activations: bool = opt.with_snake_alias(
            False, "--show-activations",
            help="Show activation values 0-10 to the explainer (longer prompts)."),
        dtype: str = opt.DType,
        seed: int = typer.Option(22, "--seed", help="Seed of every draw."),
        overwrite: list[str] = typer.Option([], "--overwrite", help="Stages to redo: examples, explanations, "
                                            "scores, or all. Without it a rerun resumes the run, and stops at one "
                                            "made from a store rebuilt since (all redoes it) or with another "
                                            "explainer (explanations redoes them)."),
        name: str = typer.Option("", "--name", help="Run name: outputs in workspace/interp/NAME (default: the "
                                 "dictionary's name)."),
        control: Optional[str] = typer.Option(None, "--control", help="An interp run made the same way on a "
                                              "dictionary of a random model (`saelab train --random-init`): a name "
                                              "in workspace/interp/ or a run directory. Adds each scorer's mean "
                                              "score here and there, the gap with a two-sample bootstrap CI, and in "
                                              "words whether the explanations measure what the trained model "
                                              "learned. A finished run only recomputes the comparison."),
        results_dir: Optional[str] = opt.with_snake_alias(
            None, "--results-dir",
            help="Write to results_dir/NAME instead."),
        workspace: Optional[str] = opt.WorkspaceOpt,
        layer: Optional[int] = opt.SelLayer, width: Optional[str] = opt.SelWidth, l0: Optional[str] = opt.SelL0,
        site: Optional[str] = opt.SelSite, cache_dir: Optional[str] = opt.HubCacheDir,
    ) -> None:
        """Explain latents with an LLM (or top tokens) and score the explanations (detection, fuzz, recall,
        simulation, intruder, embedding, surprisal) against the top-tokens baseline and shuffled explanations
        (measured chance; intruder shows no explanation: chance 1/N). Reruns skip finished work and retry
        only failed answers."""
        from ..interp import ExampleConfig, InterpConfig, run
        from ..workspace import Workspace, check_name
        from . import console

        emit = lambda m: console.print(m, highlight=False, markup=False)  # noqa: E731
        ex = ExampleConfig(example_ctx_len=example_ctx_len, center_examples=center_examples,
                           n_examples_train=n_examples_train, n_examples_test=n_examples_test,
                           train_type=train_type,  # type: ignore[arg-type]
                           n_non_activating=n_non_activating, min_examples=min_examples,
                           non_activating_source=non_activating_source, filter_bos=filter_bos,  # type: ignore[arg-type]
                           seed=seed)
        config = InterpConfig(examples=ex, max_latents=max_latents, latents=_latent_ids(latents),
                              explainer=explainer, scorers=tuple(_split(scorers)),
                              explainer_provider=explainer_provider, explainer_model=explainer_model,
                              base_url=base_url, api_key_env=api_key_env,
                              explainer_model_max_len=explainer_model_max_len,
                              num_examples_per_scorer_prompt=num_examples_per_scorer_prompt,
                              n_intruder_examples=n_intruder_examples, batch_size=batch_size,
                              show_activations=show_activations, dtype=dtype)
        ws = Workspace.at(workspace)
        if name:
            check_name(name, "--name")
        hps = _split(hookpoints) or [None]
        control_run = _control_run(ws, control, config, len(hps)) if control is not None else None
        runs: dict[str, Path] = {}
        for hp in hps:
            sel = opt.selector(hp, layer, width, l0, site)
            store = _ensure_store(ws, model, sparse_model, sel, dataset_repo, dataset_split, dataset_column,
                                  cache_ctx_len, n_tokens, batch_size, dtype, emit)
            run_name = f"{name}__{hp}" if name and hp else (name or store)
            out_dir = Path(results_dir) / (name or store) / (hp or "") if results_dir else None
            if hp is not None:
                emit(f"hookpoint {hp}: store {store}, run {run_name}")
            runs[hp or store] = run(config, ws, store, name=run_name, out_dir=out_dir, overwrite=_split(overwrite))
        if len(runs) == 1:
            out = next(iter(runs.values()))
            if control_run is not None:
                _write_control(ws, out, control_run, seed, "--control")
        else:
            parts = [r.name.split("__") for r in runs.values()]  # store names: REPO__HOOKPOINT
            common = [p[0] for p in zip(*parts) if len(set(p)) == 1]
            group = name or "__".join(common) or "hookpoints"
            out = _group_summary(Path(results_dir) / group if results_dir else ws.interp(group), sparse_model, runs)
        console.print((out / "summary.md").read_text(), markup=False, highlight=False)
        per_hookpoint = "" if len(runs) == 1 else f" (one run per hookpoint: {', '.join(map(str, runs.values()))})"
        emit(f"outputs in {out}{per_hookpoint}")

    @app.command("autointerp-compare")
    def autointerp_compare(
        run: str = typer.Argument(..., help="A finished interp run: a name under workspace/interp/ or a directory."),
        control: str = typer.Argument(..., help="The same run made on a dictionary of a random model "
                                      "(`saelab train --random-init`): a name or a directory."),
        seed: int = typer.Option(22, "--seed", help="Seed of the bootstrap draws."),
        workspace: Optional[str] = opt.WorkspaceOpt,
    ) -> None:
        """Compare a finished run with its random-model control (what `autointerp --control` adds, without
        rerunning anything): per scorer, the mean per-latent score of both, the gap with a two-sample bootstrap
        CI (10,000 draws), and whether the explanations separate the trained model from a random one. Written
        into RUN (control.json, summary.md, summary.json, run_config.json). Seconds."""
        from ..interp.control import find_control
        from ..workspace import Workspace
        from . import console

        ws = Workspace.at(workspace)
        out = find_control(ws, run, "RUN")
        _write_control(ws, out, find_control(ws, control, "CONTROL"), seed, "CONTROL")
        console.print((out / "summary.md").read_text(), markup=False, highlight=False)
        console.print(f"outputs in {out}", highlight=False, markup=False)

    @app.command("autointerp-merge")
    def autointerp_merge(
        runs: list[str] = typer.Argument(..., help="Finished interp runs over disjoint latents: names under "
                                         "workspace/interp/ or run directories."),
        name: str = typer.Option(..., "--name", help="The merged run: written to workspace/interp/NAME."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing NAME."),
        workspace: Optional[str] = opt.WorkspaceOpt,
    ) -> None:
        """Merge interp runs made the same way over different latents (e.g. `--latents` slices run on
        several machines or days) into one run whose summary pools every latent: pooled metrics, both
        baselines and the latent-by-latent comparisons with their CIs. Copies records, runs no model;
        refuses runs whose settings differ (named) or whose latents overlap. Seconds."""
        from ..interp import find_run, merge
        from ..workspace import Workspace
        from . import console

        ws = Workspace.at(workspace)
        with ws.lock("interp", name):
            out = merge([find_run(ws, None, r) for r in runs], ws.interp(name), overwrite=overwrite)
        console.print((out / "summary.md").read_text(), markup=False, highlight=False)
        console.print(f"outputs in {out}", highlight=False, markup=False)
