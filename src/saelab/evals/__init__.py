"""Evaluation: how good is a dictionary, alone and side by side (DESIGN.md §5)."""

from .config import EvalConfig
from .evaluate import evaluate_many
from .reconstruction import ReconstructionStats
from .reconstructors import CoderReconstructor, DenseBaseline, Reconstructor
from .run import compare, run_eval
from .sparsity import SparsityStats

__all__ = ["CoderReconstructor", "DenseBaseline", "EvalConfig", "Reconstructor", "ReconstructionStats",
           "SparsityStats", "compare", "evaluate_many", "run_eval"]
