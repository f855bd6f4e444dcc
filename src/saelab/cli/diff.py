"""`saelab diff`: what changed between a base and a fine-tuned model, at which layer, in words, with examples."""

from __future__ import annotations

from typing import Optional

import typer

from . import common as opt

SPEED = "Speed on 2 CPU cores, SmolLM2-135M:"


def register(app: typer.Typer) -> None:
    @app.command()
    def diff(
        base_model: str = typer.Option(..., "--base-model", help="The base model: embedded name (smollm2-135m), "
                                       "Hugging Face id, model directory or .gguf."),
        target_model: str = typer.Option(..., "--target-model", help="The fine-tuned model; it must share the base "
                                         "model's tokenizer and hidden size (e.g. a `saelab finetune` directory)."),
        output_dir: str = typer.Option("saelab-diff", "--output-dir", "-o", help="Where activations/, features/, "
                                       "visualizations/ and reports/ go. A rerun resumes: finished stages are kept."),
        layers: Optional[str] = typer.Option(None, "--layers", help="Decoder layers for the crosscoder, e.g. 15 or "
                                             "10,20 or 10-12 (default: the crosscoder file's layer, else the middle "
                                             "layer). Each layer costs one crosscoder; the forward runs to the "
                                             "deepest."),
        crosscoder_file: Optional[str] = typer.Option(None, "--crosscoder-file", help="Reuse a trained crosscoder "
                                                      "(a features/layer_LL/crosscoder directory or its weights file) "
                                                      "instead of training one: saves the whole training time."),
        device: str = opt.Device,
        cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Download directory for hub models "
                                                "(default: the Hugging Face cache)."),
        dtype: str = typer.Option("auto", "--dtype", "--quantization", help="auto | float32 | float16 | bfloat16 | "
                                  "int8 (also fp32, fp16, bf16; --quantization is the seed's spelling). auto: bf16 "
                                  "where the CPU (AMX / AVX512-BF16) or GPU multiplies it fast (~2x fp32), else "
                                  "float32 (bf16 on a CPU without them ran 50-300x slower); int8 (CPU dynamic "
                                  "quantization, or bitsandbytes on CUDA) saves memory, is slower on CPU and changes "
                                  "the activations slightly; refused where the platform has no int8 kernels."),
        corpus: str = opt.Corpus,
        n_tokens: int = typer.Option(65_536, "--n-tokens", help="Corpus tokens both models read (prompts come on "
                                     f"top). {SPEED} ~2,000 tokens/s per model to layer 15."),
        ctx_len: int = opt.CtxLen,
        categories: Optional[str] = typer.Option(None, "--categories", help="Prompt categories file: JSON "
                                                 "{\"category\": [\"prompt\", ...]} or JSONL {\"category\", \"text\"} "
                                                 "lines (default: saelab's set of 7 categories × 12 prompts)."),
        crosscoder_latents: int = typer.Option(2048, "--crosscoder-latents", help="Latents of the crosscoder. Time "
                                               "grows linearly with it."),
        crosscoder_k: int = typer.Option(32, "--crosscoder-k", help="BatchTopK: active latents per token on average."),
        crosscoder_tokens: int = typer.Option(262_144, "--crosscoder-tokens", help="Training tokens (the activations "
                                              "are re-read per epoch). Time grows linearly with it."),
        crosscoder_batch_size: int = typer.Option(1024, "--crosscoder-batch-size", help="Tokens per optimiser step."),
        seed: int = typer.Option(0, "--seed", help="Seed of the corpus shuffle, the crosscoder and the examples."),
        explainer: str = typer.Option("auto", "--explainer", help="auto (the embedded Qwen2.5-Coder-1.5B when "
                                      "installed, else top-tokens) | qwen2.5-coder-1.5b (good, ~1-2 min per latent "
                                      "on 2 cores) | smollm2-135m (fast, poor) | top-tokens (no LLM, instant) | a "
                                      "model spec."),
        n_named: int = typer.Option(4, "--n-named", help="Latents named per group (target-only, base-only /2, "
                                    "most-changed); naming time is linear in it with an LLM explainer."),
        feature_threshold: float = typer.Option(0.1, "--feature-threshold", help="Δnorm band of the tags: "
                                                "target-only < t, base-only > 1 − t, shared within t of 0.5."),
        report_format: str = typer.Option("both", "--report-format", help="markdown | html | both."),
        skip_activations: bool = typer.Option(False, "--skip-activations", help="Do not run the models: reuse the "
                                              "paired activations already in --output-dir (an error if there are "
                                              "none)."),
        skip_sweep: bool = typer.Option(False, "--skip-sweep", help="Skip the layer sweep (full forwards of both "
                                        "models to the logits on a sample of windows; ~1/3 of the model time)."),
        skip_naming: bool = typer.Option(False, "--skip-naming", help="Count latents without explaining them (saves "
                                         "all LLM time)."),
        skip_visualization: bool = typer.Option(False, "--skip-visualization", help="No PNG plots (saves seconds)."),
        skip_report: bool = typer.Option(False, "--skip-report", help="No report.md / report.html."),
        batch_size: int = opt.BatchSize,
        overwrite: bool = typer.Option(False, "--overwrite", help="Recompute the paired activations or a crosscoder "
                                       "that --output-dir holds from other settings (without it such a rerun stops "
                                       "with an error; finished stages with the same settings are always reused)."),
    ) -> None:
        """Diff a fine-tuned model against its base: paired activations on the corpus and prompt categories, a layer
        sweep (where the models diverge, per-token KL), a BatchTopK crosscoder per layer with its latent table
        (Δnorm tags, decoder cosine, latent scaling), named latents and a Markdown/HTML report."""
        from dataclasses import replace

        from ..diff.naming import NAMING_EXAMPLES, NamingConfig
        from ..diff.pipeline import DiffConfig, run_feature_interpretation_pipeline
        from ..distributed import init_from_env, local_device
        from ..train import CrosscoderConfig
        from . import console
        from .finetune import _parse_layers

        config = DiffConfig(
            corpus=corpus, n_tokens=n_tokens, ctx_len=ctx_len, categories=categories, batch_size=batch_size,
            crosscoder=CrosscoderConfig(d_sae=crosscoder_latents, k=crosscoder_k, n_tokens=crosscoder_tokens,
                                        batch_size=crosscoder_batch_size, seed=seed),
            feature_threshold=feature_threshold, seed=seed,
            naming=NamingConfig(explainer=explainer, n_target_only=n_named, n_base_only=max(1, n_named // 2),
                                n_changed=n_named, examples=replace(NAMING_EXAMPLES, seed=seed)))
        skip = [name for name, on in (("activations", skip_activations), ("sweep", skip_sweep),
                                      ("naming", skip_naming), ("visualization", skip_visualization),
                                      ("report", skip_report)) if on]
        if categories is not None:  # a malformed file fails here, before any model is loaded
            from ..diff.categories import load_categories

            load_categories(categories)
        rank, _ = init_from_env(device)  # under torchrun: paired activations and crosscoders split by rank
        result = run_feature_interpretation_pipeline(
            base_model, target_model, output_dir, layers=_parse_layers(layers), config=config,
            crosscoder_file=crosscoder_file, device=str(local_device(device)), dtype=dtype,  # type: ignore[arg-type]
            cache_dir=cache_dir, skip=skip, report_format=report_format, overwrite=overwrite,  # type: ignore[arg-type]
            emit=lambda m: console.print(m, highlight=False, markup=False))
        if rank:
            return
        console.print("stages: " + ", ".join(f"{k} {v}" for k, v in result.done.items()))
        console.print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items() if v))
        for path in result.reports:
            console.print(f"report: {path.resolve()}")
