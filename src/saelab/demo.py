"""`saelab demo`: the whole pipeline on the embedded model and corpus, in stages.

Each stage writes its artifact into the workspace and is skipped on a rerun when that
artifact is complete, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .diff import DiffConfig, DiffResult
from .diff.naming import NamingConfig
from .errors import ArtifactError
from .models.load import DEFAULT_MODEL, LoadedModel
from .train import CrosscoderConfig
from .train.config import default_lr
from .workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Budgets of the demo (defaults fit ~15 minutes on 2 cores)."""

    model: str = DEFAULT_MODEL
    corpus: str = "mixed-en"
    dtype: str = "auto"
    """Model dtype for streaming activations: `auto` takes bf16 where the CPU has bf16 matrix units (~2x fp32)
    and float32 where it has not (bf16 measured 50–300x slower there)."""
    device: str = "cpu"
    hookpoint: str = "resid_post.6"
    train_tokens: int = 327_680
    """Training tokens of both SAEs (one activation stream feeds both)."""
    eval_tokens: int = 32_768
    """Held-out tokens (the last windows) for evaluation."""
    ce_tokens: int = 4_096
    """Tokens of the CE/KL splice (3 full forwards each)."""
    widths: dict[str, int] = field(default_factory=lambda: {"full": 2048, "ultra": 16384})
    """Name → number of latents of each demo SAE."""
    k: int = 32
    batch_size: int = 8
    """Windows per model forward (every stage) and per optimiser step of the one-pass stages."""
    train_epochs: float = 6.0
    """Passes of both SAEs over their training tokens, read from an activation buffer (one model pass)."""
    train_batch_size: int = 4
    """Windows of text positions per optimiser step of the SAEs (4 × 256 tokens)."""
    lr_scale: float = 8.0
    """× saelab's default rate (2e-4 / sqrt(d_sae / 2^14)). With `train_epochs` and `dead_tokens`, chosen by the
    sweep in bench/RESULTS.md (`bench/demo_sweep.py`): 6 passes at 8× matched 27% of full's latents one-to-one
    with < 1% dead; 16× matched 40% but left 12% / 23% of the latents dead; 1 pass at 1× (earlier versions)
    left the decoders at their random initialisation and matched none."""
    dead_tokens: int = 100_000
    """Training tokens without firing before AuxK treats a latent as dead (sparsify's 10M is longer than the
    demo's whole run, so AuxK would never act; at 100K it kept dead latents near 1% at 8× the rate: the sweep)."""
    diff: bool = True
    """Also make a model pair (SmolLM2 fine-tuned on BBC sport) and diff it (`saelab.diff`, a few minutes)."""

    @property
    def n_tokens(self) -> int:
        return self.train_tokens + self.eval_tokens


Emit = Callable[[str], None]


def stage_tokens(cfg: DemoConfig, ws: Workspace, lm: LoadedModel, emit: Emit):
    from .data.run import TokensConfig, run

    windows = run(TokensConfig(corpus=cfg.corpus, n_tokens=cfg.n_tokens), ws, lm)
    emit(f"{windows.n_windows:,} windows × {windows.ctx_len} tokens from {windows.cfg['n_documents']:,} documents "
         f"of {cfg.corpus}; excluded positions: {', '.join(windows.config.exclude)}")
    return windows


def stage_activations(cfg: DemoConfig, ws: Workspace, lm: LoadedModel, windows, emit: Emit) -> None:
    from .activations.run import ActivationsConfig, run

    r = run(ActivationsConfig(hookpoints=(cfg.hookpoint,), batch_size=cfg.batch_size, n_windows=64), ws, lm, windows)
    for name, st in r["hookpoints"].items():
        emit(f"{cfg.hookpoint} ({name}) over {st['n_tokens']:,} text positions at {r['tokens_per_second']:,.0f} tok/s "
             f"(forward stopped after the hookpoint): mean ‖x‖ {st['mean_norm']:.1f}, max {st['max_norm']:.0f}, "
             f"‖mean‖ {st['mean_norm_of_mean']:.1f}, total variance {st['total_variance']:.0f}, per-dimension "
             f"variance {st['dim_variance_min']:.3g}–{st['dim_variance_max']:.3g}; {st['n_excluded_positions']:,} "
             f"excluded positions (mean ‖x‖ {st['mean_norm_excluded']:.0f}); {st['n_nonfinite_tokens']} NaN/inf")


def stage_train(cfg: DemoConfig, ws: Workspace, lm: LoadedModel, windows, emit: Emit) -> None:
    from .train import run
    from .train.config import DictionarySpec, TrainConfig

    todo = [n for n in cfg.widths if not (ws.dictionary(n) / "cfg.json").exists()]
    if todo:
        specs = tuple(DictionarySpec(n, cfg.hookpoint, cfg.widths[n], cfg.k) for n in todo)
        from .train.checkpoint import CHECKPOINT_NAME

        resume = (ws.root / "train" / "demo" / CHECKPOINT_NAME).exists()  # an interrupted demo goes on
        run(TrainConfig(dictionaries=specs, n_tokens=cfg.train_tokens, batch_size=cfg.train_batch_size,
                        shuffle_windows=8 * cfg.train_batch_size, epochs=cfg.train_epochs, lr_scale=cfg.lr_scale,
                        dead_tokens=cfg.dead_tokens),
            ws, lm, windows, run_name="demo", resume=resume)
    for n in cfg.widths:
        t = _training_record(ws, n)
        final = t.get("final") if isinstance(t.get("final"), dict) else {}
        emit(f"{n}: {cfg.widths[n]:,} latents, k={cfg.k}, {t.get('steps', 0):,} steps over "
             f"{t.get('tokens_seen', cfg.train_tokens):,} tokens ({cfg.train_epochs:g} passes over "
             f"{cfg.train_tokens:,}, one model pass)"
             + (f", held-out FVU {final['heldout_fvu']:.3f}" if isinstance(final.get("heldout_fvu"), float) else "")
             + (f", dead {final['dead_fraction']:.1%}" if isinstance(final.get("dead_fraction"), float) else "")
             + (f"; decoder rows' median cosine to their initialisation {final['decoder_cos_init']:.2f}"
                if isinstance(final.get("decoder_cos_init"), float) else ""))


def _training_record(ws: Workspace, name: str) -> dict[str, Any]:
    from ._io import read_json

    return read_json(ws.dictionary(name) / "cfg.json").get("extra", {}).get("training", {})


def stage_cache(cfg: DemoConfig, ws: Workspace, lm: LoadedModel, windows, emit: Emit) -> None:
    from .coders import load_dictionary
    from .latents import LatentStore
    from .latents.config import CacheConfig
    from .latents.run import run

    todo = {n: load_dictionary(ws.dictionary(n)) for n in cfg.widths if not (ws.latents(n) / "cfg.json").exists()
            or not _complete(ws.latents(n))}
    if todo:
        run(CacheConfig(batch_size=cfg.batch_size, n_windows=cfg.train_tokens // windows.ctx_len), ws, lm, windows,
            todo, buffer=_training_buffer(ws, next(iter(todo))))
    for n in cfg.widths:
        s = LatentStore(ws.latents(n)).summary()
        emit(f"{n}: {s['n_text_tokens']:,} text tokens cached, {s['n_dead']:,} of {s['d_sae']:,} latents dead, "
             f"mean L0 {s['mean_l0']:.1f}, {s['disk_bytes'] / 1e6:.1f} MB on disk")


def _training_buffer(ws: Workspace, name: str) -> Any:
    """The activation buffer the SAE `name` trained from, when it is still there: the cache reads the same
    windows from it instead of running the model again (None: the cache runs the model)."""
    from .activations.buffer import ActivationBuffer

    path = _training_record(ws, name).get("buffer")
    if not path or not (Path(path) / "cfg.json").exists():
        return None
    try:
        return ActivationBuffer(path)
    except ArtifactError:
        return None


def _complete(path) -> bool:
    from ._io import read_json

    return bool(read_json(path / "cfg.json").get("complete"))


def stage_evals(cfg: DemoConfig, ws: Workspace, lm: LoadedModel, windows, emit: Emit) -> dict[str, Any]:
    from .evals import EvalConfig, compare
    from .report.summary import fvu_references

    a, b = list(cfg.widths)
    out = ws.root / "evals" / f"{a}__{b}"
    config = EvalConfig(n_tokens=cfg.eval_tokens, ce_n_tokens=cfg.ce_tokens, batch_size=cfg.batch_size,
                        metrics=("reconstruction", "sparsity", "downstream"))
    r = compare(a, b, ws, lm, windows, out, config, resume=True)
    emit(r["summary_text"].rstrip())
    emit(f"{'kept (same dictionaries, settings and tokens)' if r['reused'] else 'written'}: {out}")
    # FVU's reference point: PCA keeping as many directions as `a` has active latents (both SAEs: L0 = k), fitted
    # on the windows before the evaluated ones, on the same tokens; its d×d covariance takes seconds
    dense = EvalConfig(n_tokens=cfg.eval_tokens, batch_size=cfg.batch_size, metrics=("reconstruction", "sparsity"))
    pca = compare(a, "dense:pca", ws, lm, windows, ws.root / "evals" / f"{a}__pca", dense)
    results = [(out.name, {"metrics": {a: r["a"], b: r["b"]}}), (f"{a}__pca", {"metrics": {"pca": pca["b"]}})]
    for ref in fvu_references(results):
        emit(ref.line)
    return r


def stage_match(cfg: DemoConfig, ws: Workspace, emit: Emit) -> None:
    from ._io import read_json
    from .match import MatchConfig
    from .match.run import match_dir, run

    narrow, wide = sorted(cfg.widths, key=cfg.widths.get)  # type: ignore[arg-type]
    cfg_path = match_dir(ws, wide, narrow) / "cfg.json"
    before = cfg_path.stat().st_mtime_ns if cfg_path.exists() else None
    out = run(MatchConfig(), ws, wide, narrow, resume=True)
    emit(read_json(out / "cfg.json")["headline"]["text"])
    kept = before is not None and (out / "cfg.json").stat().st_mtime_ns == before
    emit(f"{'kept (same dictionaries, settings and tokens)' if kept else 'written'}: "
         f"{out}/matches.parquet, families.json, summary.md")


def stage_cooc_sfal(cfg: DemoConfig, ws: Workspace, lm: LoadedModel, windows, emit: Emit) -> None:
    from .cooc import CoocConfig
    from .cooc.run import run as cooc_run
    from .interp import TOP_TOKENS
    from .report.references import sfal_references
    from .sfal import SfalConfig
    from .sfal.run import run as sfal_run

    name = min(cfg.widths, key=cfg.widths.get)  # type: ignore[arg-type]
    co = cooc_run(CoocConfig(), ws, name, windows)
    emit(f"co-occurrence of {name}: {co.counts.n_windows:,} windows of {co.cfg['config']['k']} tokens inside documents")
    r = sfal_run(SfalConfig(), ws, name, TOP_TOKENS.name, tokenizer=lm.tokenizer)
    for ref in sfal_references(name, r.aggregates, TOP_TOKENS.kind):
        emit(ref.line)
    emit(f"written: {r.csv}, {r.summary}")


def stage_interp(cfg: DemoConfig, ws: Workspace, emit: Emit) -> None:
    from ._io import read_json
    from .interp.config import demo_preset
    from .interp.run import run
    from .report.references import failure_sentences, interp_references
    from .report.sources import explained_by, interp_control

    name = min(cfg.widths, key=cfg.widths.get)  # type: ignore[arg-type]
    out = run(demo_preset(max_latents=4), ws, name)  # the explainer dominates the demo's time
    s = read_json(out / "summary.json")
    emit(f"{s['n_latents']} latents of {name} explained by SmolLM2-135M (a quick preset: it proves the pipeline, "
         f"not the latents; --explainer_model qwen2.5-coder-1.5b for real explanations); {len(s['skipped'])} skipped")
    for line in failure_sentences(s) + [r.line for r in interp_references(name, s, explained_by(out),
                                                                          interp_control(out))]:
        emit(f"  {line}")
    if t := s.get("timings"):
        emit("  seconds per latent: " + ", ".join(f"{k} {v['seconds_per_latent']:.1f}" for k, v in t.items()))
    emit(f"written: {out / 'summary.md'}")


TOP_TOKENS_LATENTS = 128
"""Latents of the no-LLM check: enough for a paired CI over latents, at about a second each."""
TOP_TOKENS_EXAMPLES = 25
"""Activating and non-activating examples scored per latent (interp's default 50 costs twice the time and,
measured on the demo's `full`, narrows the CI of the difference by a fifth only)."""


def top_tokens_config(max_latents: int = TOP_TOKENS_LATENTS):
    """The interp config of the no-LLM check (`saelab autointerp --explainer top-tokens --scorers embedding
    --max-latents N --n-examples-test 25 --n-non-activating 25`): top-token descriptions scored by the embedding
    scorer against shuffled descriptions (measured chance, always scored), on the first `max_latents` latents
    with enough examples (interp's choice, in id order)."""
    from .interp import TOP_TOKENS, ExampleConfig, InterpConfig

    examples = ExampleConfig(n_examples_test=TOP_TOKENS_EXAMPLES, n_non_activating=TOP_TOKENS_EXAMPLES)
    return InterpConfig(examples=examples, max_latents=max_latents, explainer=TOP_TOKENS.name, scorers=("embedding",))


def top_tokens_sentences(s: dict[str, Any], dictionary: str) -> list[str]:
    """What the no-LLM check says, from its summary.json: the top-token descriptions' mean per-latent AUC beside
    shuffled descriptions (chance) with the paired difference's CI and the verdict (`saelab.report.references`),
    and seconds per latent (describing and scoring, summed over reruns)."""
    from .report.references import interp_references

    seconds = sum(t["seconds"] for t in (s.get("timings") or {}).values())
    passed = sum(int(k) >= 0 for k in s["skipped"])  # -1: the latents that never fire, not candidates
    return [*(r.line for r in interp_references(dictionary, s, None)),
            f"{seconds / max(s['n_latents'], 1):.2f} s per latent (describing and scoring: {seconds:.0f} s in all); "
            f"the first {s['n_latents']} latents with enough examples, {passed} passed over"]


def stage_interp_top_tokens(cfg: DemoConfig, ws: Workspace, emit: Emit) -> None:
    from ._io import read_json
    from .interp import TOP_TOKENS
    from .interp.run import run

    name = min(cfg.widths, key=cfg.widths.get)  # type: ignore[arg-type]
    out = run(top_tokens_config(), ws, name, name=f"{name}-{TOP_TOKENS.name}")  # resumes: a rerun reads it back
    for line in top_tokens_sentences(read_json(out / "summary.json"), name):
        emit(line)
    emit(f"written: {out / 'summary.md'}")


# --- the model diff: a real pair (SmolLM2 fine-tuned on BBC sport) and its diff ---------------------

DEMO_LAYER = 15
"""The middle of SmolLM2's 30 layers (Minder et al. 2025 read the middle layer too)."""
DEMO_DIFF = DiffConfig(
    n_tokens=65_536, ctx_len=256, n_sweep_windows=16,
    # 1,024 steps at 4× the default rate, from the sweep in bench/RESULTS.md (bench/crosscoder_sweep.py): 256 steps
    # at 1× left the decoder at cosine 0.97 to its initialisation (held-out FVU 0.41, Δnorm sd 0.003); this
    # reaches 0.26 with Δnorm sd 0.013 in 49 s on 2 cores. 16× collapsed (76 latents fire on held-out tokens).
    crosscoder=CrosscoderConfig(d_sae=2048, k=32, n_tokens=1_048_576, batch_size=1024, lr=4 * default_lr(2048)),
    naming=NamingConfig(n_target_only=3, n_base_only=1, n_changed=3))
N_SLICE_PROMPTS = 24
SLICE_PROMPT_CHARS = 700


def slice_category_name(slice_name: str) -> str:
    return f"{slice_name} (held out of the fine-tune)"


def demo_categories(heldout: list[str], slice_name: str, path: Path) -> Path:
    """saelab's default categories plus the slice's held-out documents (cut to a window), as a JSON file."""
    from .diff.categories import load_categories

    cats = load_categories()
    cats[slice_category_name(slice_name)] = [t[:SLICE_PROMPT_CHARS] for t in heldout[:N_SLICE_PROMPTS]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cats, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def run_demo_diff(root: str | Path, emit: Callable[[str], None], *, device: str = "cpu",
                  config: DiffConfig = DEMO_DIFF, layers: tuple[int, ...] = (DEMO_LAYER,),
                  client: Any = None) -> DiffResult:
    """Fine-tune (once; reused when `root/diff/target` holds it) and diff; returns the pipeline's result.

    Example:
        >>> r = run_demo_diff("saelab-workspace", print)
        >>> r.reports[0]   # saelab-workspace/diff/run/reports/report.md
    """
    from .diff import run_feature_interpretation_pipeline
    from .finetune import CONFIG_NAME, finetune, load_slice
    from .finetune import DEMO_FINETUNE as p

    root = Path(root)
    target = root / "diff" / "target"
    part = load_slice(p.slice, seed=p.seed)
    if not (target / CONFIG_NAME).exists():
        emit(f"fine-tuning {p.model} on {p.slice} ({p.steps} steps × {p.batch_size} windows × {p.ctx_len} tokens)")
    finetune(p.model, part, target, steps=p.steps, lr=p.lr, batch_size=p.batch_size, ctx_len=p.ctx_len, seed=p.seed,
             layers_trainable=p.layers_trainable, precision=p.precision, progress=False)
    rec = json.loads((target / CONFIG_NAME).read_text())
    b, a = rec["loss_before"], rec["loss_after"]
    emit(f"target: {p.model} fine-tuned on {rec['slice']} ({rec['n_tokens_trained']:,} tokens): loss on held-out "
         f"{rec['slice']} {b['heldout_slice']:.3f} → {a['heldout_slice']:.3f}, on other text "
         f"{b['other_text']:.3f} → {a['other_text']:.3f}")
    cats = demo_categories(part.heldout, p.slice, root / "diff" / "categories.json")
    result = run_feature_interpretation_pipeline(p.model, str(target), root / "diff" / "run", layers=list(layers),
                                                 config=replace(config, categories=str(cats)), device=device,
                                                 quantization="auto", emit=emit, client=client, progress=False)
    for line in key_sentences(result.output_dir):
        emit(line)
    return result


def key_sentences(output_dir: str | Path) -> list[str]:
    """The report's overview and per-layer sentences (what the demo prints)."""
    from .diff.report import report_context

    ctx = report_context(output_dir)
    return [*ctx["overview"], *(s for v in ctx["layers"] for s in v["sentences"])]


def stage_diff(cfg: DemoConfig, ws: Workspace, emit: Emit) -> None:
    result = run_demo_diff(ws.root, emit, device=cfg.device)
    emit(f"diff report: {result.reports[0].resolve()}" if result.reports else "diff: no report written")


def stage_report(ws: Workspace, lm: LoadedModel, emit: Emit) -> None:
    from .report import ModelView, ReportConfig, run

    index = run(ReportConfig(max_latent_pages=500), ws, view=ModelView.from_loaded(lm))
    emit(f"report written; open {index.resolve().as_uri()}")


def stage_summary(ws: Workspace, emit: Emit) -> None:
    """The headline numbers, each beside its reference point, as the report's front page and summary.md say."""
    from .report.summary import SUMMARY_NAME, headline

    for ref in headline(ws):
        emit(ref.line)
    emit(f"written: {ws.report / SUMMARY_NAME}")


STAGES = ("tokens", "activations", "train", "cache", "evals", "match", "co-occurrence + SFAL", "auto-interp",
          "auto-interp (top tokens)", "model diff", "report", "summary")


def run_demo(cfg: DemoConfig, ws: Workspace, emit: Emit) -> dict[str, float]:
    """Run every stage; return seconds per stage."""
    from .models.load import load_model

    seconds: dict[str, float] = {}
    t = time.perf_counter()
    lm = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    d = lm.describe()
    emit(f"model: {cfg.model}: {d['architecture']}, {d['n_layers']} layers, d_model {d['d_model']}, "
         f"{lm.n_params / 1e6:.0f}M parameters, {d['dtype']} on {d['device']}")
    seconds["model"] = time.perf_counter() - t

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        emit(f"── {len(seconds)}. {name}")
        t0 = time.perf_counter()
        out = fn()
        seconds[name] = time.perf_counter() - t0
        return out

    windows = timed("tokens", lambda: stage_tokens(cfg, ws, lm, emit))
    timed("activations", lambda: stage_activations(cfg, ws, lm, windows, emit))
    timed("train", lambda: stage_train(cfg, ws, lm, windows, emit))
    timed("cache", lambda: stage_cache(cfg, ws, lm, windows, emit))
    timed("evals", lambda: stage_evals(cfg, ws, lm, windows, emit))
    timed("match", lambda: stage_match(cfg, ws, emit))
    timed("co-occurrence + SFAL", lambda: stage_cooc_sfal(cfg, ws, lm, windows, emit))
    timed("auto-interp", lambda: stage_interp(cfg, ws, emit))
    timed("auto-interp (top tokens)", lambda: stage_interp_top_tokens(cfg, ws, emit))
    if cfg.diff:
        timed("model diff", lambda: stage_diff(cfg, ws, emit))
    timed("report", lambda: stage_report(ws, lm, emit))
    timed("summary", lambda: stage_summary(ws, emit))
    return seconds
