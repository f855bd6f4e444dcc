"""Training sparse dictionaries from activations: TopK, BatchTopK, Matryoshka SAEs and transcoders from
one activation stream (`run(config, workspace, lm, windows)` -> dictionary directories), and model-diffing
crosscoders from paired activations (`train_crosscoder`). One config family (`OptimConfig`), one
`Trainer`, one checkpoint format, one loss module."""

from .config import ARCHITECTURES, CrosscoderConfig, DictionarySpec, OptimConfig, TrainConfig, default_lr
from .crosscoder import CrosscoderTrainer, train_crosscoder
from .run import run, train
from .trainer import DictionaryTrainer, Trainer, coder_config, geometric_median

__all__ = ["ARCHITECTURES", "CrosscoderConfig", "CrosscoderTrainer", "DictionarySpec", "DictionaryTrainer",
           "OptimConfig", "TrainConfig", "Trainer", "coder_config", "default_lr", "geometric_median", "run",
           "train", "train_crosscoder"]
