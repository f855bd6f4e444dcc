"""Training sparse dictionaries (TopK, BatchTopK, Matryoshka SAEs and transcoders) from one
activation stream: `run(config, workspace, lm, windows)` -> dictionary directories."""

from .config import ARCHITECTURES, DictionarySpec, TrainConfig, default_lr
from .run import run, train
from .trainer import DictionaryTrainer, coder_config, geometric_median

__all__ = ["ARCHITECTURES", "DictionarySpec", "DictionaryTrainer", "TrainConfig", "coder_config", "default_lr",
           "geometric_median", "run", "train"]
