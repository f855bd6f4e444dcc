"""Reading activations: capture at hookpoints, stream over token windows, statistics."""

from .capture import ActivationReader
from .fits import check_dictionaries_fit, check_dictionary_fits, hookpoint_widths
from .stats import ActivationStats
from .stream import ActivationBatch, StreamConfig, stream_activations

__all__ = ["ActivationBatch", "ActivationReader", "ActivationStats", "StreamConfig", "check_dictionaries_fit",
           "check_dictionary_fits",
           "hookpoint_widths", "stream_activations"]
