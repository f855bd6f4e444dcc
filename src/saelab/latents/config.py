"""Configuration of a latent cache, and the interface of the dictionaries it encodes with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch

from ..errors import ConfigError

ValueDType = Literal["float16", "bfloat16"]
VALUE_DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class Encoder(Protocol):
    """What the cache needs of a dictionary (`saelab.coders.SparseCoder` is one)."""

    cfg: Any
    """Has `hookpoint` (canonical input hookpoint), `d_in`, `d_sae`."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, d_in] → dense non-negative latents [N, d_sae]."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor]:
        ...


@dataclass(frozen=True)
class CacheConfig:
    """How latent activations are cached."""

    batch_size: int = 8
    """Windows per forward pass."""
    shard_windows: int = 256
    """Windows per shard: memory is bounded by one shard, and a shard is the unit of resume.
    Must be a multiple of `batch_size` so that a batch never straddles two shards."""
    value_dtype: ValueDType = "bfloat16"
    """Dtype of the stored activation values (float16 overflows above 65504)."""
    n_windows: int | None = None
    """Cache only the first N windows of the workspace (None: all)."""

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ConfigError(f"batch_size: got {self.batch_size}; expected a positive number of windows, e.g. 8.")
        if self.shard_windows <= 0 or self.shard_windows % self.batch_size:
            raise ConfigError(f"shard_windows: got {self.shard_windows}; expected a positive multiple of "
                              f"batch_size ({self.batch_size}), e.g. {32 * self.batch_size}.")
        if self.value_dtype not in VALUE_DTYPES:
            raise ConfigError(f"value_dtype: got {self.value_dtype!r}; expected 'float16' or 'bfloat16'.")
        if self.n_windows is not None and self.n_windows <= 0:
            raise ConfigError(f"n_windows: got {self.n_windows}; expected a positive number of windows or None (all).")

    @property
    def torch_value_dtype(self) -> torch.dtype:
        return VALUE_DTYPES[self.value_dtype]
