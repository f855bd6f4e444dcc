"""`load_model(spec)`: a Hugging Face id or directory, a GGUF file, or an embedded name."""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .._io import sha256_file, state_dict_hash
from ..errors import ConfigError, ModelError, choices_message
from .defaults import DEFAULT_MODEL
from .embedded import EMBEDDED_MODELS, cache_dir, cast_copy, ensure_converted, gguf_to_safetensors, stored_dtype
from .hookpoints import decoder_layers_path
from .random_init import parse_random_spec, random_model

log = logging.getLogger(__name__)

DType = Literal["auto", "float32", "bfloat16", "float16"]
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Model dtypes by their one name; every place that takes a dtype name goes through `dtype_name`."""
SHORT_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
"""The seed's short spellings (the diff's `--quantization` values), accepted wherever a dtype is."""
QUANTIZATIONS = ("int8",)
"""Weight quantizations a model can be loaded with where the caller supports them (the diff does)."""
AUTO = "auto"
"""bfloat16 where the device multiplies bf16 matrices fast, else float32 (see `auto_dtype`)."""
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def _cpu_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), None)
    return set(line.split(":", 1)[1].split()) if line else None


@functools.lru_cache(maxsize=None)
def cpu_bf16() -> tuple[bool, str]:
    """(whether bf16 matmuls are fast on this CPU, why). From the CPU's flags where Linux lists them (AMX or
    AVX512-BF16: bf16 ~2–4× fp32; without them PyTorch falls back to a path 50–300× slower than fp32 (measured
    on a 2-core AVX2 EPYC: bf16 0.28 GFLOP/s at 2048² and 1.4 at 512², fp32 72–138 at 2048²); elsewhere
    from one timed 512² matmul in each dtype."""
    flags = _cpu_flags()
    if flags is not None:
        has = [f for f in _BF16_FLAGS if f in flags]
        return bool(has), (f"CPU has {', '.join(has)}" if has else f"CPU lacks {' and '.join(_BF16_FLAGS)}")
    a = torch.randn(512, 512)
    seconds = {}
    for dt in (torch.float32, torch.bfloat16):
        x = a.to(dt)
        x @ x
        t0 = time.perf_counter()
        x @ x
        seconds[dt] = time.perf_counter() - t0
    ratio = seconds[torch.float32] / max(seconds[torch.bfloat16], 1e-9)
    return ratio > 1.2, f"bf16 matmul measured at {ratio:.2f}× fp32"


def auto_dtype(device: torch.device) -> tuple[torch.dtype, str]:
    """The model dtype `auto` stands for on `device`, and why: bf16 on a GPU that supports it and on a CPU
    with bf16 matrix units, float32 elsewhere (a bf16 model on a CPU without them ran 50–300× slower)."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return (torch.bfloat16, "GPU supports bf16") if ok else (torch.float32, "GPU lacks bf16")
    fast, why = cpu_bf16()
    return (torch.bfloat16 if fast else torch.float32), why


@dataclass
class LoadedModel:
    """A causal LM with its tokenizer and the facts saelab needs about it."""

    model: nn.Module
    """The `AutoModelForCausalLM` (in eval mode, gradients off)."""
    tokenizer: Any
    spec: str
    """What the user asked for (`smollm2-135m`, a hub id, a path); a random model's in full, with its seed
    (`random:smollm2-135m@0`)."""
    path: str
    """What was actually loaded (a directory or hub id; `random:DIRECTORY@SEED` for a random model): goes into
    cfg.json, and `load_model(path)` loads the same weights again."""
    dtype: torch.dtype
    device: torch.device

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def n_layers(self) -> int:
        return len(self.model.get_submodule(decoder_layers_path(self.model)))

    @property
    def d_model(self) -> int:
        return int(self.config.hidden_size)

    @property
    def max_positions(self) -> int:
        return int(getattr(self.config, "max_position_embeddings", 1 << 30))

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @functools.cached_property
    def weights_hash(self) -> str:
        """sha256 (16 hex) of the weight files the model was loaded from (*.safetensors, *.bin, *.gguf, in name
        order), else (a random model, a model built in memory) of its in-memory weights: the model's identity
        wherever a cache put it (~0.4 s per 500 MB, once per LoadedModel)."""
        where = Path(self.path) if self.path and parse_random_spec(self.path) is None else Path("/nonexistent")
        if where.is_file():
            files = [where]
        else:
            files = sorted(p for ext in ("*.safetensors", "*.bin", "*.gguf") for p in where.glob(ext)) \
                if where.is_dir() else []
        if not files:
            return state_dict_hash(self.model)
        h = hashlib.sha256()
        for f in files:
            h.update(f"{f.name}|{sha256_file(f)}".encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        described = {"spec": self.spec, "path": self.path, "architecture": self.config.model_type,
                     "n_layers": self.n_layers, "d_model": self.d_model,
                     "dtype": str(self.dtype).removeprefix("torch."), "device": str(self.device),
                     "vocab_size": int(self.config.vocab_size)}
        if (rnd := parse_random_spec(self.spec)) is not None:
            described["random_init"] = {"model": rnd.model, "seed": rnd.seed,
                                        "note": "the model's architecture, config and tokenizer with every weight "
                                                "drawn by its own initialisation: a control, not a trained model"}
        return described


def dtype_name(name: str, arg: str = "dtype", quantizations: tuple[str, ...] = ()) -> str:
    """The one name of a dtype spelling: `auto`, a key of `DTYPES` (the short names fp32 / bf16 / fp16 map to
    them), or one of `quantizations` (e.g. `QUANTIZATIONS`, where the caller can load quantized weights).

    Raises ConfigError naming `arg` and the accepted names.

    Example:
        >>> dtype_name("bf16"), dtype_name("float32"), dtype_name("int8", quantizations=QUANTIZATIONS)
        ('bfloat16', 'float32', 'int8')
    """
    canonical = SHORT_NAMES.get(name, name) if isinstance(name, str) else None
    if canonical is not None and (canonical == AUTO or canonical in DTYPES or canonical in quantizations):
        return canonical
    raise ConfigError(choices_message(arg, name, [AUTO, *DTYPES, *quantizations],
                                      f"Short names {', '.join(SHORT_NAMES)} are accepted too."))


def parse_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu", arg: str = "dtype") -> torch.dtype:
    """A torch dtype from its name (`dtype_name`'s spellings; `auto`: see `auto_dtype`, decided for `device`).

    Example:
        >>> parse_dtype("bf16"), parse_dtype("float32")
        (torch.bfloat16, torch.float32)
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    name = dtype_name(dtype, arg)
    if name == AUTO:
        chosen, why = auto_dtype(torch.device(device))
        log.info("dtype auto → %s (%s)", str(chosen).removeprefix("torch."), why)
        return chosen
    return DTYPES[name]


def parse_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device: got {device!r}; expected 'cpu', 'cuda' or 'cuda:N'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: got {device!r} but CUDA is not available on this machine; use 'cpu'.")
    return dev


def resolve_model_path(spec: str) -> tuple[str, str | None]:
    """Map a spec to (directory or hub id, gguf file name or None). `random:MODEL@SEED` maps to MODEL's: its
    tokenizer and config are those."""
    if (rnd := parse_random_spec(spec)) is not None:
        try:
            return resolve_model_path(rnd.model)
        except ModelError as e:
            raise ModelError(f"{e} (in {spec!r}: random:MODEL@SEED takes any model spec as MODEL)") from None
    if spec in EMBEDDED_MODELS:
        return str(ensure_converted(EMBEDDED_MODELS[spec])), None
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"model: GGUF file {spec!r} does not exist.")
        out = cache_dir() / "models" / f"gguf-{path.stem}-{path.stat().st_size}"
        if not (out / "config.json").exists():
            gguf_to_safetensors(path.resolve(), out)
        return str(out), None
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError(
                f"model: directory {spec!r} has no config.json, so it is not a Hugging Face model directory."
            )
        return str(path), None
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return spec, None  # a hub id: transformers downloads it (users with internet)
    raise ModelError(
        choices_message("model", spec, list(EMBEDDED_MODELS),
                        "Or give a Hugging Face id (org/name), a model directory, or a .gguf file.")
    )


_STORED = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def weights_dir(path: str, dtype: torch.dtype) -> str:
    """Where `load_model` reads the weights of `path` in `dtype`: a model saelab converted (float32, under its
    cache's `models/`) from its copy in `dtype` (`cast_copy`, made once), which transformers maps instead of
    casting while it keeps the float32 files mapped (peak: the weights, not the files plus the weights); any
    other directory, or hub id, as it is. The values are the same either way; `LoadedModel.path` stays `path`."""
    p = Path(path)
    if not p.is_dir() or p.resolve().parent != (cache_dir() / "models").resolve():
        return path
    stored = stored_dtype(p)
    return path if stored is None or _STORED.get(stored) == dtype else str(cast_copy(p, dtype))


def load_model(spec: str = DEFAULT_MODEL, dtype: str | torch.dtype = "float32",
               device: str | torch.device = "cpu", cache_dir: str | Path | None = None) -> LoadedModel:
    """Load a causal LM for reading activations.

    Args:
        spec: an embedded name (`smollm2-135m`, `gemma3-270m`), a Hugging Face id
            (`HuggingFaceTB/SmolLM2-135M-Instruct`), a local model directory, or a `.gguf` file; or
            `random:SPEC[@SEED]`: SPEC's architecture, config and tokenizer with every weight drawn afresh
            (seed 0 by default; see `random_init`), the control for auto-interpretation scores.
        dtype: `auto` (bf16 where the device has fast bf16 matmuls, else float32), `float32`,
            `bfloat16` or `float16` (or fp32, bf16, fp16), a torch dtype, or `int8` (see `quantize`:
            dynamic int8 on a CPU, bitsandbytes on CUDA).
        device: `cpu`, `cuda`, `cuda:N`.
        cache_dir: where a Hugging Face id is downloaded (default: the Hugging Face cache).

    Example:
        >>> lm = load_model("smollm2-135m", dtype="bfloat16")
        >>> lm.n_layers, lm.d_model
        (30, 576)
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from .quantize import INT8, check_int8, load_int8_cuda, quantize_dynamic_int8

    if not log.isEnabledFor(logging.INFO):  # the weight-loading bar is noise beside saelab's own progress (-v: shown)
        hf_logging.disable_progress_bar()
    dev = parse_device(device)
    int8 = isinstance(dtype, str) and dtype_name(dtype, quantizations=QUANTIZATIONS) == INT8
    if int8:
        check_int8(dev)
    torch_dtype = torch.float32 if int8 else parse_dtype(dtype, dev)  # int8: float32 weights, quantized after
    rnd = parse_random_spec(spec)
    if rnd is not None and int8 and dev.type == "cuda":
        raise ConfigError(f"dtype: int8 on CUDA loads quantized weights from files, and {spec!r} has none; load "
                          "it in float32 / bfloat16, or in int8 on the CPU.")
    base = rnd.model if rnd is not None else spec
    path, _ = resolve_model_path(spec)
    if cache_dir is not None and path == base and not Path(base).expanduser().exists():
        from huggingface_hub import snapshot_download

        path = snapshot_download(base, cache_dir=str(cache_dir),
                                 allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
    try:
        tok = AutoTokenizer.from_pretrained(path)
        if rnd is not None:
            model = random_model(path, rnd.seed, torch_dtype)
        elif int8 and dev.type == "cuda":
            model, torch_dtype = load_int8_cuda(path, str(dev)), torch.float16
        else:
            model = AutoModelForCausalLM.from_pretrained(weights_dir(path, torch_dtype), dtype=torch_dtype)
    except OSError as e:  # hub id not found / offline
        raise ModelError(f"model: could not load {spec!r}: {str(e).splitlines()[0]}") from None
    if not (int8 and dev.type == "cuda"):
        model.to(dev).eval().requires_grad_(False)
    if int8 and dev.type == "cpu":
        model = quantize_dynamic_int8(model)
    if rnd is not None:  # the seed always written out: `random:M` and `random:M@0` are one model, one identity
        spec, path = str(rnd), str(replace(rnd, model=path))
    log.info("loaded %s (%s) as %s on %s", spec, path, "int8" if int8 else torch_dtype, dev)
    return LoadedModel(model=model, tokenizer=tok, spec=spec, path=path, dtype=torch_dtype, device=dev)
