"""`random:MODEL[@SEED]`: MODEL's architecture, config and tokenizer with every weight drawn afresh.

The control of auto-interpretation: Heap et al. (2025, arXiv 2501.17727) found that explanations of latents
of SAEs trained on a randomly initialised transformer score nearly as well as a trained one's under the
usual metrics, so a score means something only beside the score of a model that learned nothing.

The weights are the model class's own initialisation (`from_config`, which runs the class's
`_init_weights`), drawn in float32 from torch's CPU generator seeded with SEED (default 0) and cast to the
dtype asked for: the same spec gives the same weights in every dtype and on every call. (Re-initialising a
model loaded with `from_pretrained` would not do: transformers marks loaded weights as initialised and its
`init_weights` then leaves them as they are.)

A random model is identified as `random:PATH@SEED` wherever a model's path is recorded (LoadedModel.path, a
latent store's cfg.json), so no cache or check takes it for the trained model at PATH, and the string loads
the same weights again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError

PREFIX = "random:"


@dataclass(frozen=True)
class RandomSpec:
    """A parsed `random:MODEL@SEED`."""

    model: str
    """The model whose architecture, config and tokenizer are kept (any spec `load_model` takes)."""
    seed: int = 0
    """Seed of the initialisation."""

    def __str__(self) -> str:
        return f"{PREFIX}{self.model}@{self.seed}"


def parse_random_spec(spec: str, arg: str = "model") -> RandomSpec | None:
    """`random:MODEL` / `random:MODEL@SEED` parsed (seed 0 when none is given); None for any other spec.

    Raises ConfigError naming `arg` for `random:` with no model, a nested `random:`, or a seed that is not a
    non-negative integer.

    Example:
        >>> parse_random_spec("random:smollm2-135m"), str(parse_random_spec("random:smollm2-135m@3"))
        (RandomSpec(model='smollm2-135m', seed=0), 'random:smollm2-135m@3')
    """
    if not isinstance(spec, str) or not spec.startswith(PREFIX):
        return None
    rest = spec[len(PREFIX):]
    model, sep, seed = rest.rpartition("@")
    if not sep:
        model, seed = rest, "0"
    elif not seed.isdigit():
        if Path(rest).expanduser().exists():  # a directory whose name has an @
            model, seed = rest, "0"
        else:
            raise ConfigError(f"{arg}: got {spec!r}; the seed after '@' must be a non-negative integer, like "
                              f"random:{model or 'smollm2-135m'}@1.")
    if not model:
        raise ConfigError(f"{arg}: got {spec!r} with no model after 'random:'; write random:MODEL or "
                          "random:MODEL@SEED, e.g. random:smollm2-135m (MODEL's architecture and tokenizer with "
                          "randomly initialised weights).")
    if model.startswith(PREFIX):
        raise ConfigError(f"{arg}: got {spec!r}; give one 'random:' (random:MODEL@SEED).")
    return RandomSpec(model, int(seed))


def base_path(path: str) -> str:
    """The directory (or hub id) a recorded model path reads its tokenizer and config from: `path` itself, or
    PATH of `random:PATH@SEED`."""
    parsed = parse_random_spec(path)
    return parsed.model if parsed is not None else path


def random_model(path: str, seed: int, dtype: torch.dtype) -> nn.Module:
    """The causal LM of the config in `path` (a model directory or hub id) with weights drawn by the class's own
    initialisation from a generator seeded with `seed` (in float32, then cast to `dtype`). Torch's global
    random state is left as it was."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU generator only: a GPU's random state is not touched
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.to(dtype)
