"""`saelab finetune`: fine-tune a model on a narrow, named corpus slice, making a pair to diff."""

from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    from ..models.defaults import DEMO_FINETUNE as p

    @app.command()
    def finetune(
        output_dir: str = typer.Option(..., "--output-dir", "-o",
                                       help="Directory of the fine-tuned model (a Hugging Face model directory; "
                                            "diff it with --target-model DIR)."),
        model: str = typer.Option(p.model, "--model", "-m",
                                  help="Base model: embedded name, Hugging Face id, model directory or .gguf."),
        slice_: str = typer.Option(p.slice, "--slice",
                                   help="What to train on: an embedded corpus (sotu, wiki-en, bbc-news) or one "
                                        "source of it (bbc-news/sports, bbc-news/tech, bbc-news/politics, "
                                        "bbc-news/business, bbc-news/entertainment), or a .txt/.jsonl/.parquet path. "
                                        "10% of its documents are held out to measure the change."),
        steps: int = typer.Option(p.steps, "--steps", help="Optimizer steps."),
        lr: float = typer.Option(p.lr, "--lr", help="Peak learning rate (AdamW; warm-up over 10% of steps, "
                                                   "then cosine decay to 10%)."),
        batch_size: int = typer.Option(p.batch_size, "--batch-size", help="Windows per optimizer step."),
        ctx_len: int = typer.Option(p.ctx_len, "--ctx-len", help="Tokens per training window."),
        seed: int = typer.Option(p.seed, "--seed", help="Seed of the held-out split, the window order and the "
                                                        "initialisation of the training loop."),
        layers: Optional[str] = typer.Option(None, "--layers",
                                             help="Decoder layers that train, e.g. 10-19 or 4,8,12 (default: all, "
                                                  "plus the final norm). Embeddings never train."),
        precision: str = typer.Option(p.precision, "--precision",
                                      help="auto | bf16-autocast (fp32 weights, bf16 matmuls; faster on CPUs "
                                           "with AMX / AVX512-BF16) | fp32. auto picks bf16-autocast only where the "
                                           "CPU has those units."),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="Replace a fine-tune made with other settings at --output-dir "
                                            "(one made with the same settings is reused)."),
    ) -> None:
        """Fine-tune a model on a narrow slice of a corpus and save it as a Hugging Face model directory.

        The change is known and named (the slice), so `saelab diff` on base vs this model can be checked against it.

        finetune_config.json records the slice, steps, tokens and the loss before/after on held-out slice text and on
        other text (Wikipedia leads). Run it again with the same settings and the saved model is reused.
        """
        from .._io import check_output_dir
        from ..finetune import finetune as run_finetune
        from ..finetune import load_slice
        from . import console

        layer_list = _parse_layers(layers)
        check_output_dir(output_dir, "--output-dir")
        path = run_finetune(model, load_slice(slice_, seed=seed), output_dir, steps=steps, lr=lr,
                            batch_size=batch_size, ctx_len=ctx_len, seed=seed, layers_trainable=layer_list,
                            precision=precision, overwrite=overwrite)  # type: ignore[arg-type]
        import json

        rec = json.loads((path / "finetune_config.json").read_text())
        b, a = rec["loss_before"], rec["loss_after"]
        console.print(f"fine-tuned {rec['base_model']} on [bold]{rec['slice']}[/]: {rec['steps']} steps, "
                      f"{rec['n_tokens_trained']:,} tokens in {rec['train_seconds']:.0f} s")
        console.print(f"  loss on held-out {rec['slice']}: {b['heldout_slice']:.3f} → {a['heldout_slice']:.3f}")
        console.print(f"  loss on other text:        {b['other_text']:.3f} → {a['other_text']:.3f}")
        console.print(f"saved to {path} (load it with --target-model {path})")


def _parse_layers(text: str | None) -> list[int] | None:
    from ..errors import ConfigError

    if text is None or not text.strip():
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            out.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    except ValueError:
        raise ConfigError(f"--layers: got {text!r}; expected indices and ranges like 10-19 or 4,8,12.") from None
    return out
