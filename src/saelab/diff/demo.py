"""The model-diffing part of `saelab demo`: fine-tune SmolLM2 on a named slice, then diff base vs target.

The planted change is `DEMO_FINETUNE.slice` (BBC sport reports). Beside saelab's default
prompt categories, the diff reads one more category made of the slice's HELD-OUT documents
(never trained on), so the report can say whether the target-only and most-changed latents
fire on the kind of text the fine-tune saw — the check the demo exists for.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ..train import CrosscoderConfig
from .naming import NamingConfig
from .pipeline import DiffConfig, DiffResult, run_feature_interpretation_pipeline

DEMO_LAYER = 15
"""The middle of SmolLM2's 30 layers (Minder et al. 2025 read the middle layer too)."""
DEMO_DIFF = DiffConfig(
    n_tokens=65_536, ctx_len=256, n_sweep_windows=16,
    crosscoder=CrosscoderConfig(d_sae=2048, k=32, n_tokens=262_144, batch_size=1024),
    naming=NamingConfig(n_target_only=3, n_base_only=1, n_changed=3))
N_SLICE_PROMPTS = 24
SLICE_PROMPT_CHARS = 700


def slice_category_name(slice_name: str) -> str:
    return f"{slice_name} (held out of the fine-tune)"


def demo_categories(heldout: list[str], slice_name: str, path: Path) -> Path:
    """saelab's default categories plus the slice's held-out documents (cut to a window), as a JSON file."""
    from .categories import load_categories

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
    from .report import report_context

    ctx = report_context(output_dir)
    return [*ctx["overview"], *(s for v in ctx["layers"] for s in v["sentences"])]
