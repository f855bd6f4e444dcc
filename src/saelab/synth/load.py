"""`load_synth_model`: read a directory written by SAELens's `SyntheticModel.save` (also what
`SyntheticModel.from_pretrained` downloads) or by `SynthModel.save`.

What is read, and what is rebuilt, as SAELens's `SyntheticModel.load_from_disk` does it:
- config, feature_vectors, bias, firing_probabilities: read;
- correlation_factor / correlation_diag: read when present, else rebuilt from the config (seed + 4);
- hierarchy.json: read when present, else rebuilt from the config (seed + 3);
- mean / std firing magnitudes: read when saelab wrote them, else rebuilt from the config (seed + 2 / + 1;
  with `seed: null` and a folded_normal kind, SAELens's own reload draws new magnitudes too).
One deliberate difference: the correlation thresholds come from the stored firing_probabilities; SAELens computes
them from the config's regenerated probabilities before it overwrites those with the stored ones (the two agree
unless the stored probabilities were edited, or came from `random` probabilities without a seed).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .._io import read_json, read_json_object
from ..errors import ConfigError, FormatError, first_line
from .build import low_rank_correlation
from .config import SynthConfig
from .hierarchy import Hierarchy, generate_hierarchy
from .model import CONFIG_FILE, HIERARCHY_FILE, WEIGHTS_FILE, SynthModel
from .profiles import magnitudes

_LAYOUT = (f"a synthetic model directory ({CONFIG_FILE}, {WEIGHTS_FILE}, optional {HIERARCHY_FILE}) as written by "
           "SAELens's SyntheticModel.save or saelab's SynthModel.save")


def load_synth_model(path: str | Path) -> SynthModel:
    """The model saved in directory `path`, on CPU. Missing or garbled files raise FormatError naming the file.

    Example: `m = load_synth_model("synth-16k"); x, acts = m.sample(1024, torch.Generator().manual_seed(0))`."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FormatError(f"{path}: not a directory; expected {_LAYOUT}.")
    cfg = _config(path / CONFIG_FILE)
    tensors = _weights(path / WEIGHTS_FILE, cfg)
    seed = cfg.seed
    if "correlation_factor" not in tensors and cfg.correlation is not None:
        tensors["correlation_factor"], tensors["correlation_diag"] = low_rank_correlation(
            cfg.num_features, cfg.correlation.rank, cfg.correlation.correlation_scale, _offset(seed, 4))
    hierarchy = _hierarchy(path / HIERARCHY_FILE)
    if hierarchy is None and cfg.hierarchy is not None:
        hierarchy = generate_hierarchy(cfg.num_features, cfg.hierarchy, _offset(seed, 3))
    for name, field, k in (("mean_firing_magnitudes", cfg.mean_firing_magnitudes, 2),
                           ("std_firing_magnitudes", cfg.std_firing_magnitudes, 1)):
        if name not in tensors:
            tensors[name] = magnitudes(cfg.num_features, field, _offset(seed, k))
    try:
        return SynthModel(cfg=cfg, hierarchy=hierarchy, **tensors)
    except ConfigError as e:
        raise FormatError(f"{path}: {WEIGHTS_FILE} or {HIERARCHY_FILE} disagrees with {CONFIG_FILE} ({e}); "
                          f"expected {_LAYOUT}.") from None


def _offset(seed: int | None, k: int) -> int | None:
    return None if seed is None else seed + k


def _config(file: Path) -> SynthConfig:
    if not file.is_file():
        raise FormatError(f"{file}: missing; expected {_LAYOUT}.")
    raw = read_json_object(file, "a synthetic model's config (SAELens's SyntheticModelConfig.to_dict())")
    try:
        return SynthConfig.from_dict(raw)
    except ConfigError as e:
        raise FormatError(f"{file}: not a usable synthetic model config ({e}).") from None


_OPTIONAL = ("correlation_factor", "correlation_diag", "mean_firing_magnitudes", "std_firing_magnitudes")


def _weights(file: Path, cfg: SynthConfig) -> dict[str, Tensor]:
    """The tensors SynthModel takes, as float32; FormatError for a missing file, tensor or a wrong shape."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not file.is_file():
        raise FormatError(f"{file}: missing; expected {_LAYOUT}.")
    try:
        raw = load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise FormatError(f"{file}: not a readable safetensors file ({first_line(e)}); expected the tensors "
                          "feature_vectors, bias, firing_probabilities. The file may be truncated: copy it again.") \
            from None
    required = ("feature_vectors", "bias", "firing_probabilities")
    missing = [k for k in required if k not in raw]
    if ("correlation_factor" in raw) != ("correlation_diag" in raw):
        missing.append("correlation_diag" if "correlation_factor" in raw else "correlation_factor")
    if missing:
        raise FormatError(f"{file}: missing tensors {missing}; found {sorted(raw)}; expected {', '.join(required)} "
                          "(and correlation_factor with correlation_diag when correlated).")
    out = {k: raw[k] for k in (*required, *_OPTIONAL) if k in raw}
    bad = [k for k, t in out.items() if not t.is_floating_point()]
    if bad:
        raise FormatError(f"{file}: tensors {bad} are not floating point; expected float32 tensors.")
    return {k: t.to(torch.float32) for k, t in out.items()}


def _hierarchy(file: Path) -> Hierarchy | None:
    if not file.exists():
        return None
    try:
        return Hierarchy.from_dict(read_json(file, 'a hierarchy ({"roots": [...]}, SAELens\'s Hierarchy.to_dict())'))
    except ConfigError as e:
        raise FormatError(f"{file}: not a usable hierarchy ({e}).") from None
    except RecursionError:
        raise FormatError(f"{file}: nested too deeply to be a feature hierarchy.") from None
