"""`run_feature_interpretation_pipeline`: base vs target model → crosscoder → named latents → report.

Stages, each writing its artifact under `output_dir` with a cfg.json beside it that records what
it was made from (`request`), each skipped on a rerun when its artifact is complete and was made
the same way; `output_dir/cfg.json` (`"artifact": "diff_run"`) describes the whole run:

1. activations    `activations/`: paired windows (corpus + category prompts) and both models'
                  residual streams at the chosen layers (`saelab.activations.paired`)
2. sweep          `activations/sweep/`: per-layer divergence and per-token KL on a sample of windows
3. crosscoder     `features/layer_LL/crosscoder/`: a BatchTopK crosscoder per layer (`saelab.train`), or
                  `crosscoder_file`
4. features       `features/layer_LL/`: latent store, latent table, report examples
5. naming         `features/layer_LL/naming/`: explanations + detection scores (`naming`, on
                  `saelab.interp.explain_and_score`)
6. visualization  `visualizations/`: PNGs (`plots`)
7. report         `reports/report.md`, `reports/report.html` (rebuilt every run: it is seconds)

The models are loaded only when a stage that needs them has work to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

from .._io import CFG_NAME, json_safe, read_json, versions, write_cfg, write_json
from ..activations.paired import PairedActivations
from ..coders.load import load_crosscoder
from ..distributed import barrier, is_main, rank_and_world
from ..errors import ArtifactError, ConfigError, choices_message
from ..lock import hold_directory
from ..models.hookpoints import residual_layer, residual_names
from ..train import CrosscoderConfig
from .load import ARTIFACT, layer_dir
from .naming import NamingConfig, load_named, name_features
from .pair import extract_activations_for_comparison
from .plots import create_visualizations
from .report import REPORT_FORMATS, ReportFormat, generate_report

log = logging.getLogger(__name__)

STAGES = ("activations", "sweep", "crosscoder", "features", "naming", "visualization", "report")
ModelDtype = Literal["auto", "float32", "float16", "bfloat16", "int8", "fp32", "fp16", "bf16"]

__all__ = ["DiffConfig", "DiffResult", "STAGES", "create_visualizations", "extract_activations_for_comparison",
           "generate_report", "name_features", "run_feature_interpretation_pipeline"]


@dataclass(frozen=True)
class DiffConfig:
    """What a diff reads and how much of it (the models and layers are arguments of the pipeline)."""

    corpus: str = "mixed-en"
    """Corpus both models read (any `load_corpus` spec)."""
    n_tokens: int = 65_536
    """Corpus tokens (cut into windows of `ctx_len`); the category prompts come on top."""
    ctx_len: int = 256
    categories: str | None = None
    """Prompt categories file (JSON or JSONL, see `categories`); None: saelab's default set."""
    n_sweep_windows: int = 32
    """Corpus windows of the layer sweep (plus every prompt window); the sweep runs both models to the logits."""
    batch_size: int = 8
    """Windows per forward pass."""
    activation_dtype: Literal["bfloat16", "float32"] = "bfloat16"
    """Dtype of the stored activations (bf16 halves the disk)."""
    crosscoder: CrosscoderConfig = field(default_factory=lambda: CrosscoderConfig(
        d_sae=2048, k=32, n_tokens=262_144, batch_size=1024))
    """The crosscoder trained per layer (latents, k, training tokens: the stream is re-read per epoch)."""
    heldout_fraction: float = 0.1
    """Share of corpus windows never trained on; the crosscoder's FVU is measured there."""
    feature_threshold: float = 0.1
    """Δnorm band of the tags: target-only < t, base-only > 1 − t, shared within t of 0.5."""
    naming: NamingConfig = field(default_factory=NamingConfig)
    n_report_examples: int = 3
    """Top examples per named latent in the report."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_tokens", "ctx_len", "n_sweep_windows", "batch_size", "n_report_examples"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: got {getattr(self, name)}; expected a positive integer.")
        if not 0 < self.feature_threshold < 0.25:
            raise ConfigError(f"feature_threshold: got {self.feature_threshold}; expected a Δnorm band in (0, 0.25), "
                              "e.g. 0.1 (the target-only, shared and base-only bands must not overlap).")
        if not 0 < self.heldout_fraction < 0.5:
            raise ConfigError(f"heldout_fraction: got {self.heldout_fraction}; expected a share in (0, 0.5).")
        if self.activation_dtype not in ("bfloat16", "float32"):
            raise ConfigError(choices_message("activation_dtype", self.activation_dtype, ["bfloat16", "float32"]))


@dataclass
class DiffResult:
    """What a pipeline run produced."""

    output_dir: Path
    layers: list[int]
    reports: list[Path]
    """The report files written (empty when the report stage was skipped)."""
    seconds: dict[str, float]
    """Wall seconds per stage this run (0 for a stage that was skipped or already done)."""
    done: dict[str, str]
    """Per stage: `ran`, `resumed` (artifact already complete), or `skipped` (asked to)."""


class _Run:
    """State shared by the stages of one pipeline run."""

    def __init__(self, out: Path, pair: Any, layers: list[int] | None, config: DiffConfig, skip: set[str],
                 emit: Callable[[str], None], progress: bool, overwrite: bool = False) -> None:
        self.out, self.pair, self.config, self.skip, self.emit, self.progress = out, pair, config, skip, emit, progress
        self.layers, self.overwrite = layers, overwrite
        self.seconds: dict[str, float] = {s: 0.0 for s in STAGES}
        self.done: dict[str, str] = {}

    def timed(self, stage: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        result = fn()
        self.seconds[stage] += time.perf_counter() - t0
        return result

    def layer_dir(self, layer: int) -> Path:
        return layer_dir(self.out, layer)

    def replacing(self, what: str, where: Path, fn: Callable[[bool], Any]) -> Any:
        """`fn(resume=True)`; when the artifact on disk was made with other settings: redo it with
        `fn(resume=False)` if overwriting, else an error that says how to choose."""
        try:
            return fn(True)
        except ArtifactError as e:
            if not self.overwrite:
                raise ArtifactError(f"--output-dir {self.out}: its {what} ({where}) was made with other settings than "
                                    f"this run's: {_reason(e)}. Rerun with --overwrite (Python: overwrite=True) to "
                                    "recompute it, or choose another --output-dir.") from e
            self.emit(f"{what}: made with other settings; recomputing (--overwrite)")
            return fn(False)


def _reason(e: ArtifactError) -> str:
    """What the refusing stage said differs (its message, without the advice that follows ';')."""
    return str(e).split("; use another", 1)[0].split("; pass resume=False", 1)[0]


def run_feature_interpretation_pipeline(
    base_model: Any, target_model: Any, output_dir: str | Path, *, layers: Sequence[int] | None = None,
    config: DiffConfig = DiffConfig(), crosscoder_file: str | Path | None = None, device: str = "cpu",
    dtype: ModelDtype = "auto", quantization: ModelDtype | None = None, cache_dir: str | Path | None = None,
    skip: Iterable[str] = (),
    report_format: ReportFormat = "both", client: Any = None, emit: Callable[[str], None] | None = None,
    progress: bool = True, overwrite: bool = False,
) -> DiffResult:
    """Diff `target_model` against `base_model` at `layers`; write every stage's artifact under `output_dir`.

    Args:
        base_model, target_model: model specs (`load_model`: embedded name, hub id, directory, .gguf) or
            `LoadedModel`s. Both must share a tokenizer and hidden size.
        layers: decoder layers for the crosscoder (None: the crosscoder file's layer, else the middle layer).
        crosscoder_file: a trained crosscoder to use instead of training one: a directory (or one of its
            files) in any format `load_dictionary` reads — saelab's cfg.json + weights.safetensors, a
            dictionary_learning CrossCoder, a crosscoder-model-diff-replication checkpoint. It must fit the
            models (d_in, 2 sources, hookpoint); when its files name no layer, `layers` gives the one.
        dtype: how the models are loaded: auto | float32 | float16 | bfloat16 | int8 (int8: CPU dynamic
            quantization where torch has a quantized engine, or bitsandbytes on CUDA).
        quantization: the seed's name of `dtype` (fp32 | fp16 | bf16 | int8 | auto); given, it is used.
        cache_dir: where hub models are downloaded (default: the Hugging Face cache).
        skip: stage names not to run (see `STAGES`); skipping `activations` reuses the ones on disk.
        client: an interp client for naming (tests); default: the configured explainer.
        emit: receives one line per finished stage (the CLI prints them).
        overwrite: recompute the paired activations or a crosscoder that `output_dir` holds from other
            settings (default: refuse, so a changed option never silently discards hours of work).

    Example:
        >>> r = run_feature_interpretation_pipeline("smollm2-135m", "pair/target", "diff-run", layers=[15])
        >>> r.reports
        [PosixPath('diff-run/reports/report.md'), PosixPath('diff-run/reports/report.html')]
    """
    from .loading import ModelPair

    skip = set(skip)
    bad = sorted(skip - set(STAGES))
    if bad:
        raise ConfigError(choices_message("skip", bad, STAGES))
    if report_format not in REPORT_FORMATS:
        raise ConfigError(choices_message("report_format", report_format, REPORT_FORMATS))
    out = Path(output_dir)
    pair = ModelPair(base_model, target_model, device=device, dtype=quantization or dtype, cache_dir=cache_dir)
    coder_file = load_crosscoder(crosscoder_file, arg="--crosscoder-file") if crosscoder_file is not None else None
    if coder_file is not None:
        layers = _crosscoder_layers(coder_file, layers)
    emit = emit or log.info
    if not is_main():  # under torchrun rank 0 speaks for every rank
        emit, progress = (lambda _: None), False
    run = _Run(out, pair, list(layers) if layers is not None else None, config, skip, emit, progress, overwrite)
    # one writer per output directory; under torchrun rank 0 holds the lock for every rank
    with hold_directory(out) if is_main() else contextlib.nullcontext():
        return _run_stages(run, coder_file, client, report_format)


def _run_stages(run: _Run, coder_file: Any, client: Any, report_format: ReportFormat) -> DiffResult:
    out, skip = run.out, run.skip
    acts = _stage_activations(run)
    run.layers = acts.layers
    coders: dict[int, Any] = {}
    if rank_and_world()[1] > 1:
        # under torchrun the stages that split across ranks come first (paired activations: each rank its block
        # of shards; every layer's crosscoder: data-parallel); then rank 0 alone goes on, the others are done
        coders = {layer: _stage_crosscoder(run, acts, layer, coder_file) for layer in run.layers}
        if not is_main():
            return DiffResult(out, run.layers, [], run.seconds, run.done)
    _write_run_config(run, acts, coder_file)
    _stage_sweep(run, acts)
    for layer in run.layers:
        coder = coders[layer] if layer in coders else _stage_crosscoder(run, acts, layer, coder_file)
        if coder is None:
            continue
        store = _stage_features(run, acts, layer, coder)
        _stage_naming(run, acts, layer, store, client)
    if "visualization" not in skip:
        run.timed("visualization", lambda: create_visualizations(out))
        run.done["visualization"] = "ran"
    reports: list[Path] = []
    if "report" not in skip and all((run.layer_dir(l) / "latent_table.json").exists() for l in run.layers):
        reports = run.timed("report", lambda: generate_report(out, report_format))
        run.done["report"] = "ran"
        run.emit(f"report: {', '.join(str(p) for p in reports)}")
    for s in STAGES:
        run.done.setdefault(s, "skipped")
    write_json(out / "timings.json", {"seconds": run.seconds, "done": run.done})
    return DiffResult(out, run.layers, reports, run.seconds, run.done)


# --- stages ---------------------------------------------------------------------------------------


def _stage_activations(run: _Run) -> PairedActivations:
    from ..models.hookpoints import resolve_hookpoint
    from .categories import load_categories
    from .pair import tokenizer_notes

    path = run.out / "activations"
    request = _data_request(run)
    if "activations" in run.skip:
        if not (path / "manifest.json").exists():
            raise ArtifactError(f"--skip-activations: {path} holds no finished paired activations; run without "
                                "--skip-activations once (it resumes).")
        acts = PairedActivations(path)
        _check_layers(acts, run.layers, path)
        run.done["activations"] = "skipped"
        return acts
    if _same_request(path, request) and (path / "manifest.json").exists():
        acts = PairedActivations(path)
        if run.layers is None or set(run.layers) <= set(acts.layers):
            run.done["activations"] = "resumed"
            run.layers = run.layers or acts.layers
            return acts

    def work() -> PairedActivations:
        base, target = run.pair.load()
        layers = run.layers if run.layers is not None else [base.n_layers // 2]
        windows = run.pair.windows(run.config, load_categories(run.config.categories))
        acts = run.replacing("paired activations", path, lambda resume: extract_activations_for_comparison(
            base, target, windows, layers, path, batch_size=run.config.batch_size,
            dtype=run.config.activation_dtype, resume=resume, progress=run.progress))
        hookpoints = {str(l): resolve_hookpoint(base.model, f"resid_post.{l}").name for l in acts.layers}
        if is_main():
            _record_request(path, {**request, "layers": acts.layers, "hookpoints": hookpoints,
                                   "tokenizer_notes": tokenizer_notes(base.tokenizer, target.tokenizer)})
        barrier()  # the crosscoder stage reads the recorded hookpoints
        return acts

    acts = run.timed("activations", work)
    run.done["activations"] = "ran"
    run.emit(f"activations: {acts.n_tokens:,} paired tokens at layers {acts.layers} in "
             f"{run.seconds['activations']:.0f} s")
    return acts


def _stage_sweep(run: _Run, acts: PairedActivations) -> None:
    from .sweep import SweepResult, layer_sweep

    path = run.out / "activations" / "sweep"
    request = {"tokens_hash": acts.cfg["tokens_hash"], "n_sweep_windows": run.config.n_sweep_windows,
               **{k: acts.cfg[k].get("weights", acts.cfg[k]["path"]) for k in ("base", "target")}}
    if "sweep" in run.skip:
        run.done["sweep"] = "skipped"
        return
    if _same_request(path, request) and (path / "sweep.json").exists():
        run.done["sweep"] = "resumed"
        return

    def work() -> SweepResult:
        base, target = run.pair.load()
        windows = _sweep_windows(acts.windows(), run.config.n_sweep_windows)
        result = layer_sweep(base, target, windows, batch_size=run.config.batch_size, seed=run.config.seed,
                             progress=run.progress)
        result.save(path)
        write_cfg(path, {"artifact": "diff_sweep", "request": request, "n_windows": windows.n_windows})
        return result

    result = run.timed("sweep", work)
    run.done["sweep"] = "ran"
    run.emit(f"layer sweep: largest increase of divergence at layer {result.changed_layer}; mean KL "
             f"{result.kl_mean:.3f} nats over {result.n_tokens:,} tokens")


def _stage_crosscoder(run: _Run, acts: PairedActivations, layer: int, coder_file: Any) -> Any:
    from .features import heldout_rows, heldout_windows, train_or_resume

    if coder_file is not None:
        _check_fits(coder_file, acts, layer, run.pair)
        run.done["crosscoder"] = "file"
        return coder_file
    path = run.layer_dir(layer) / "crosscoder"
    if "crosscoder" in run.skip:
        if not (path / "cfg.json").exists():
            run.done["crosscoder"] = "skipped"
            return None
        from ..coders import SparseCoder

        run.done["crosscoder"] = "skipped"
        return SparseCoder.load(path)
    held = heldout_windows(acts, run.config.heldout_fraction)
    cc = run.config.crosscoder

    def batches():
        return acts.training_batches(layer, cc.batch_size, run.config.seed, held)

    hookpoints = _recorded_request(run.out / "activations").get("hookpoints", {})
    hookpoint = hookpoints.get(str(layer), f"resid_post.{layer}")
    coder, status = run.timed("crosscoder", lambda: run.replacing(f"layer {layer} crosscoder", path, lambda resume: (
        train_or_resume(batches, cc, acts, layer, path, hookpoint, run.progress, resume=resume,
                        heldout=heldout_rows(acts, layer, held)))))
    run.done["crosscoder"] = status
    if status == "ran":
        run.emit(f"crosscoder layer {layer}: {coder.d_sae:,} latents trained in {run.seconds['crosscoder']:.0f} s")
    return coder


def _stage_features(run: _Run, acts: PairedActivations, layer: int, coder: Any) -> Any:
    from .table import build_table

    d = run.layer_dir(layer)
    if "features" in run.skip:
        run.done["features"] = "skipped"
        from ..latents import LatentStore

        return LatentStore(d / "latents") if (d / "latents" / "cfg.json").exists() else None
    status, store = run.timed("features", lambda: build_table(acts, coder, layer, d, run.config))
    run.done["features"] = status
    if status == "ran":
        c = read_json(d / "latent_table.json")["counts"]
        run.emit(f"latent table layer {layer}: " + ", ".join(f"{v:,} {k}" for k, v in c.items()))
    return store


def _stage_naming(run: _Run, acts: PairedActivations, layer: int, store: Any, client: Any) -> None:
    from .table import write_examples

    d = run.layer_dir(layer)
    if store is None:
        return
    table = read_json(d / "latent_table.json")
    windows = acts.windows()
    tokenizer = run.pair.tokenizer()
    if "naming" in run.skip:
        run.done["naming"] = "skipped"
        named = load_named(d / "naming")
    else:
        prior = load_named(d / "naming")
        named = run.timed("naming", lambda: name_features(store, windows, tokenizer, table, d / "naming",
                                                          run.config.naming, client=client))
        run.done["naming"] = "resumed" if prior == named else "ran"
        if run.done["naming"] == "ran":
            run.emit(f"naming layer {layer}: {len(named['latents'])} latents by {named['explainer']}")
    run.timed("features", lambda: write_examples(store, windows, tokenizer, table, named, d / "examples.json",
                                                 run.config))


# --- helpers --------------------------------------------------------------------------------------


def _data_request(run: _Run) -> dict[str, Any]:
    c = run.config
    return {"base": run.pair.identity("base"), "target": run.pair.identity("target"), "corpus": c.corpus,
            "n_tokens": c.n_tokens, "ctx_len": c.ctx_len, "categories": _categories_identity(c.categories),
            "activation_dtype": c.activation_dtype, "seed": c.seed, "layers": run.layers}


def _categories_identity(path: str | None) -> str:
    from .categories import default_categories_path

    p = Path(path) if path is not None else default_categories_path()
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.is_file() else str(p)


def _same_request(path: Path, request: dict[str, Any]) -> bool:
    """The artifact at `path` was made from `request` (layers None on either side match any layers)."""
    old = _recorded_request(path)
    keys = [k for k in request if k != "layers"]
    return bool(old) and all(old.get(k) == json_safe(request[k]) for k in keys)


def _recorded_request(path: Path) -> dict[str, Any]:
    """What the artifact at `path` was made from: its cfg.json's `request` (runs made before it moved there:
    their request.json)."""
    cfg, old = path / CFG_NAME, path / "request.json"
    request = read_json(cfg).get("request") if cfg.exists() else None
    return request if request is not None else read_json(old) if old.exists() else {}


def _record_request(path: Path, request: dict[str, Any]) -> None:
    write_cfg(path, {**read_json(path / CFG_NAME), "request": request})


def _check_layers(acts: PairedActivations, layers: list[int] | None, path: Path) -> None:
    if layers is not None and not set(layers) <= set(acts.layers):
        raise ArtifactError(f"--skip-activations: {path} holds layers {acts.layers}, not {sorted(layers)}; run "
                            "without --skip-activations to read the missing layers.")


def _sweep_windows(windows: Any, n_corpus: int) -> Any:
    """The first `n_corpus` corpus windows and every prompt window (a `TokenWindows` of those rows)."""
    import torch

    from ..data.tokens import TokenWindows, hash_tokens

    n_all = windows.n_windows
    n_c = int(windows.cfg.get("n_corpus_windows", n_all))
    rows = torch.cat([torch.arange(min(n_corpus, n_c)), torch.arange(n_c, n_all)])
    tokens = windows.tokens[rows]
    cfg = {**windows.cfg, "n_windows": int(rows.numel()), "tokens_hash": hash_tokens(tokens), "subset_of":
           windows.tokens_hash}
    return TokenWindows(tokens, windows.doc_index[rows], windows.documents, windows.special_ids, windows.bos_id,
                        windows.config, cfg)


def _write_run_config(run: _Run, acts: PairedActivations, coder_file: Any) -> None:
    windows = acts.windows()
    from .pair import valid_mask

    valid = valid_mask(windows)
    n_c = int(windows.cfg.get("n_corpus_windows", windows.n_windows))
    cats = windows.cfg.get("categories", {})
    cc = run.config.crosscoder
    summary = (f"file {coder_file.cfg.d_sae:,} latents" if coder_file is not None else
               f"{cc.d_sae:,} latents, k={cc.k}, {cc.n_tokens:,} training tokens")
    write_cfg(run.out, {
        "artifact": ARTIFACT, "output_dir": str(run.out), "layers": run.layers,
        "base": acts.cfg["base"], "target": acts.cfg["target"], "config": json_safe(asdict(run.config)),
        "naming": asdict(run.config.naming), "crosscoder_summary": summary,
        "crosscoder_file": None if coder_file is None else str(getattr(coder_file, "source_path", "")),
        "crosscoder_source": None if coder_file is None else getattr(coder_file, "source", None),
        "data": {"corpus": run.config.corpus, "n_corpus_windows": n_c, "n_prompts": int(sum(cats.values())),
                 "categories": list(cats), "n_text_tokens": int(valid.sum()),
                 "n_prompt_tokens": int(valid[n_c:].sum()), "ctx_len": windows.ctx_len},
        "tokenizer_notes": _recorded_request(run.out / "activations").get("tokenizer_notes", []),
        "skip": sorted(run.skip), "versions": versions()})


def _crosscoder_layers(coder: Any, layers: Sequence[int] | None) -> list[int]:
    hookpoint = coder.cfg.hookpoint or ""
    layer = residual_layer(hookpoint)
    if layer is None or layer < 0:
        if layers is not None and len(list(layers)) == 1:
            return list(layers)
        what = "has no hookpoint" if not hookpoint else f"reads {hookpoint!r}, not a decoder layer's output"
        got = "" if layers is None else f" (got --layers {' '.join(map(str, layers))}: one layer only)"
        raise ConfigError(f"--crosscoder-file: the crosscoder ({coder.cfg.source_format} format) {what}; pass the "
                          f"layer whose residual stream it was trained on with --layers L{got}.")
    if layers is not None and list(layers) != [layer]:
        raise ConfigError(f"--layers: got {list(layers)}, but the crosscoder file reads layer {layer} "
                          f"(hookpoint {hookpoint!r}); pass --layers {layer} or leave it out.")
    return [layer]


def _check_fits(coder: Any, acts: PairedActivations, layer: int, pair: Any) -> None:
    if coder.cfg.d_in != acts.d_model:
        raise ConfigError(f"--crosscoder-file: its d_in is {coder.cfg.d_in}, but the models' residual stream at layer "
                          f"{layer} has width {acts.d_model}; it was trained on other models.")
    want = pair.hookpoint(layer)
    hookpoint = coder.cfg.hookpoint
    if want is not None and hookpoint and hookpoint not in residual_names(want, layer):
        raise ConfigError(f"--crosscoder-file: its hookpoint is {hookpoint!r}, layer {layer} of these "
                          f"models is {want!r}.")
