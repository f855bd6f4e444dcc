"""Options shared by several commands, so they are spelled and documented once."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..models.load import DEFAULT_MODEL

Model = typer.Option(DEFAULT_MODEL, "--model", "-m",
                     help="Embedded name (smollm2-135m, gemma3-270m), Hugging Face id, model directory, or .gguf file.")
DType = typer.Option("auto", "--dtype", help="Model dtype: auto | float32 | bfloat16 | float16. auto: bf16 where the CPU "
                     "(AMX / AVX512-BF16) or GPU multiplies it fast (~2x fp32), else float32 (bf16 on a CPU without "
                     "them ran 50-300x slower).")
Device = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N.")
WorkspaceOpt = typer.Option(None, "--workspace", "-w", help="Workspace directory (default: $SAELAB_WORKSPACE or ./saelab-workspace).")
Corpus = typer.Option("mixed-en", "--corpus", "-c",
                      help="Embedded corpus (mixed-en, wiki-en, sotu, bbc-news), a .txt/.jsonl/.parquet path, or a Hugging Face dataset repo.")
Split = typer.Option("train", "--split", help="Dataset split, slicing allowed (train[:1%]).")
Column = typer.Option("text", "--column", help="Text column of a dataset / jsonl / parquet file.")
CtxLen = typer.Option(256, "--ctx-len", help="Tokens per window.")
NTokens = typer.Option(1_000_000, "--n-tokens", help="Token budget for the windows.")
Seed = typer.Option(0, "--seed", help="Seed of the document shuffle.")
BatchSize = typer.Option(8, "--batch-size", help="Windows per forward pass.")
Hookpoints = typer.Option(["resid_post.6"], "--hookpoint", "-H",
                          help="Hookpoint or alias (resid_post.6, blocks.6.hook_mlp_out, model.layers.6.mlp); repeat for several.")
Overwrite = typer.Option(False, "--overwrite", help="Rebuild the workspace's token windows even if they exist.")

__all__ = ["Path", "Optional"]
