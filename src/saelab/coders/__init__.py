"""Sparse dictionaries: one `SparseCoder` for SAEs, transcoders and crosscoders, and readers
for the formats of SAELens, Gemma Scope, sparsify and dictionary_learning."""

from .base import CoderOutput, SparseCoder, batch_topk_activation, topk_activation
from .config import ARCHITECTURES, KINDS, Architecture, CoderConfig, Kind

__all__ = ["ARCHITECTURES", "Architecture", "CoderConfig", "CoderOutput", "KINDS", "Kind", "SparseCoder",
           "batch_topk_activation", "topk_activation"]
