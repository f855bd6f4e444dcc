"""Reading activations: capture at hookpoints, stream over token windows, statistics."""

from .capture import ActivationReader
from .stats import ActivationStats
from .stream import ActivationBatch, StreamConfig, stream_activations

__all__ = ["ActivationBatch", "ActivationReader", "ActivationStats", "StreamConfig", "stream_activations"]
