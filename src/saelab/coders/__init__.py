"""Sparse dictionaries: one `SparseCoder` for SAEs, transcoders and crosscoders, and readers
for the formats of SAELens, Gemma Scope, sparsify and dictionary_learning."""

from .base import CoderOutput, SparseCoder, batch_topk_activation, topk_activation
from .config import ARCHITECTURES, KINDS, Architecture, CoderConfig, Kind
from .export import export_saelens
from .load import describe_dictionary, load_dictionary, resolve_dictionary_path

__all__ = ["ARCHITECTURES", "Architecture", "CoderConfig", "CoderOutput", "KINDS", "Kind", "SparseCoder",
           "batch_topk_activation", "describe_dictionary", "export_saelens", "load_dictionary",
           "resolve_dictionary_path", "topk_activation"]
