"""Defaults that the command line shows in its help before it loads anything: this module imports no torch.

The modules that use them (`models.load`, `finetune`, `demo`) import them from here, so each has one value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DEFAULT_MODEL = "smollm2-135m"
"""The embedded model every command and the demo use unless told otherwise."""

Precision = Literal["auto", "bf16-autocast", "fp32"]
"""How a fine-tune multiplies: `auto` picks bf16-autocast only where the CPU has fast bf16 units."""


@dataclass(frozen=True)
class FinetunePreset:
    """A named fine-tune recipe (the arguments of `saelab.finetune.finetune`)."""

    slice: str
    """The corpus slice trained on (see `load_slice`)."""
    steps: int
    lr: float
    batch_size: int
    """Windows per optimizer step."""
    ctx_len: int
    seed: int = 0
    layers_trainable: tuple[int, ...] | None = None
    """Decoder layers that train (None: all of them and the final norm). Embeddings never train."""
    model: str = DEFAULT_MODEL
    precision: Precision = "auto"


# BBC sport reports (505 distinct articles: football, rugby, tennis, athletics, cricket) are
# a narrow, nameable change: distinctive vocabulary and style, ~4% of the mixed-en corpus.
# 40 steps x 4 x 256 = 41k tokens (~20% of the slice) fit the ~5 CPU-minute budget on 2
# cores with bf16 autocast (2.5-3x faster than fp32 here); lr 2e-4 keeps the change strong.
DEMO_FINETUNE = FinetunePreset(slice="bbc-news/sports", steps=40, lr=2e-4, batch_size=4, ctx_len=256, seed=0)
"""The demo's model pair: SmolLM2 fine-tuned on BBC sport (`saelab finetune` with no options)."""
