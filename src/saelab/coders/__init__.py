"""Sparse dictionaries: one `SparseCoder` for SAEs, transcoders and crosscoders, readers for the
formats of other libraries, and one resolver for workspace names, paths, trees and Hub repos."""

from .base import CoderOutput, SparseCoder, batch_topk_activation, topk_activation
from .config import ARCHITECTURES, KINDS, Architecture, CoderConfig, Kind
from .export import export_saelens
from .load import describe_dictionary, load_crosscoder, load_dictionary, load_resolved, resolve_dictionary_path
from .resolve import ResolvedDictionary, resolve_dictionary
from .tree import Selector

__all__ = ["ARCHITECTURES", "Architecture", "CoderConfig", "CoderOutput", "KINDS", "Kind", "ResolvedDictionary",
           "Selector", "SparseCoder", "batch_topk_activation", "describe_dictionary", "export_saelens",
           "load_crosscoder", "load_dictionary", "load_resolved", "resolve_dictionary", "resolve_dictionary_path",
           "topk_activation"]
