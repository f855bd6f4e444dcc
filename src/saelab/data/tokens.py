"""Token windows: the corpus cut into fixed-length windows, written once to a workspace.

Tokenization follows the field (sparsify's `chunk_and_tokenize`, delphi's
`load_tokenized_data`): documents are shuffled by seed, each is followed by EOS, the
stream is cut into windows of `ctx_len` tokens, and the last partial window is dropped.
A tokenizer that prepends BOS gets BOS at the start of every window. Each token keeps
the index of its document, so analyses can cut windows inside documents.

On disk (`workspace/tokens/`): `tokens.safetensors` with `tokens` and `doc_index`
(int32 [n_windows, ctx_len]), `documents.parquet` (source, doc_id, n_tokens) and
`cfg.json`, which carries `tokens_hash`: every later artifact records it, so one built
on other windows is refused.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .._io import atomic_path, read_json_object, write_cfg
from ..errors import ArtifactError, ConfigError, FormatError
from .corpus import Corpus, Document

log = logging.getLogger(__name__)

Exclude = Literal["sink", "bos", "special"]
DEFAULT_EXCLUDE: tuple[Exclude, ...] = ("sink", "special")


@dataclass(frozen=True)
class TokenizeConfig:
    """How a corpus is cut into token windows."""

    ctx_len: int = 256
    """Tokens per window."""
    n_tokens: int = 1_000_000
    """Token budget: windows are cut until at least this many tokens are covered."""
    seed: int = 0
    """Seed of the document shuffle."""
    exclude: tuple[Exclude, ...] = DEFAULT_EXCLUDE
    """Positions that are not text and that training, metrics and examples skip:
    `sink` = position 0 of every window (an attention sink, ~10x the residual norm),
    `bos` = BOS tokens, `special` = every special token (EOS separators, BOS, ...)."""

    def __post_init__(self) -> None:
        if self.ctx_len < 2:
            raise ConfigError(f"ctx_len: got {self.ctx_len}; expected an integer ≥ 2 (the field uses 256 or 1024).")
        if self.n_tokens <= 0:
            raise ConfigError(f"n_tokens: got {self.n_tokens}; expected a positive number of tokens, e.g. 1000000.")
        bad = [e for e in self.exclude if e not in ("sink", "bos", "special")]
        if bad:
            raise ConfigError(f"exclude: got {bad}; expected any of 'sink', 'bos', 'special'.")


@dataclass
class TokenWindows:
    """Token windows in memory (small: int32 ids), with their documents and config."""

    tokens: torch.Tensor
    """int32 [n_windows, ctx_len]"""
    doc_index: torch.Tensor
    """int32 [n_windows, ctx_len]: row of `documents` each token belongs to"""
    documents: list[dict[str, Any]]
    """one dict per document used: source, doc_id, n_tokens"""
    special_ids: list[int]
    bos_id: int | None
    config: TokenizeConfig
    cfg: dict[str, Any]
    """the cfg.json content (model, corpus, hash, counts)"""

    @property
    def n_windows(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def ctx_len(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def n_tokens(self) -> int:
        return self.tokens.numel()

    @property
    def tokens_hash(self) -> str:
        return self.cfg["tokens_hash"]

    def text_mask(self, exclude: tuple[Exclude, ...] | None = None) -> torch.Tensor:
        """bool [n_windows, ctx_len]: True where a position is text (not excluded)."""
        return text_mask(self.tokens, exclude if exclude is not None else self.config.exclude,
                         self.special_ids, self.bos_id)


def text_mask(tokens: torch.Tensor, exclude: tuple[Exclude, ...], special_ids: list[int],
              bos_id: int | None) -> torch.Tensor:
    """bool [..., ctx_len]: False at excluded positions (see `TokenizeConfig.exclude`)."""
    mask = torch.ones(tokens.shape, dtype=torch.bool)
    if "sink" in exclude:
        mask[..., 0] = False
    if "bos" in exclude and bos_id is not None:
        mask &= tokens != bos_id
    if "special" in exclude and special_ids:
        mask &= ~torch.isin(tokens, torch.tensor(special_ids, dtype=tokens.dtype))
    return mask


def _prepends_bos(tokenizer: Any) -> bool:
    ids = tokenizer("a").input_ids
    return tokenizer.bos_token_id is not None and len(ids) > 0 and ids[0] == tokenizer.bos_token_id


def _token_stream(docs: list[Document], order: np.ndarray, tokenizer: Any, eos: int,
                  needed: int, batch: int = 128) -> Iterator[tuple[int, list[int]]]:
    """Yield (document row, its tokens + EOS) in shuffled order until `needed` tokens."""
    produced = 0
    for start in range(0, len(order), batch):
        rows = order[start : start + batch]
        enc = tokenizer([docs[r].text for r in rows], add_special_tokens=False).input_ids
        for r, ids in zip(rows, enc):
            ids = list(ids) + [eos]
            yield int(r), ids
            produced += len(ids)
            if produced >= needed:
                return


def tokenize_corpus(corpus: Corpus, tokenizer: Any, config: TokenizeConfig, *,
                    max_positions: int | None = None, model_name: str = "") -> TokenWindows:
    """Cut `corpus` into token windows (see the module docstring for the recipe)."""
    if max_positions is not None and config.ctx_len > max_positions:
        raise ConfigError(
            f"ctx_len: got {config.ctx_len}, but the model has only {max_positions} positions; "
            f"use ctx_len ≤ {max_positions}."
        )
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("the tokenizer has no EOS token to separate documents; set tokenizer.eos_token.")
    bos = tokenizer.bos_token_id if _prepends_bos(tokenizer) else None
    body = config.ctx_len - (1 if bos is not None else 0)
    n_windows = math.ceil(config.n_tokens / config.ctx_len)
    docs = corpus.documents()
    order = np.random.default_rng(config.seed).permutation(len(docs))

    flat_tok: list[int] = []
    flat_doc: list[int] = []
    used: list[dict[str, Any]] = []
    for row, ids in _token_stream(docs, order, tokenizer, eos, n_windows * body):
        flat_tok.extend(ids)
        flat_doc.extend([len(used)] * len(ids))
        used.append({"source": docs[row].source, "doc_id": docs[row].doc_id, "n_tokens": len(ids)})
    n_windows = min(n_windows, len(flat_tok) // body)
    if n_windows == 0:
        raise ConfigError(
            f"the corpus {corpus.spec!r} has {len(flat_tok)} tokens, fewer than one window of ctx_len={config.ctx_len}."
        )
    if n_windows * config.ctx_len < config.n_tokens:
        log.warning("corpus %s gives only %d windows (%d tokens) of the %d requested",
                    corpus.spec, n_windows, n_windows * config.ctx_len, config.n_tokens)
    tok = torch.tensor(flat_tok[: n_windows * body], dtype=torch.int32).view(n_windows, body)
    doc = torch.tensor(flat_doc[: n_windows * body], dtype=torch.int32).view(n_windows, body)
    if bos is not None:  # each window opens with BOS, counted as part of its first token's document
        tok = torch.cat([torch.full((n_windows, 1), bos, dtype=torch.int32), tok], dim=1)
        doc = torch.cat([doc[:, :1], doc], dim=1)
    used = used[: int(doc.max()) + 1]

    special = sorted(int(i) for i in tokenizer.all_special_ids)
    cfg = {
        "artifact": "tokens",
        "model": model_name,
        "tokenizer": getattr(tokenizer, "name_or_path", ""),
        "corpus": corpus.spec,
        **asdict(config),
        "n_windows": n_windows,
        "n_tokens_total": n_windows * config.ctx_len,
        "n_documents": len(used),
        "document_separator": "eos",
        "eos_id": int(eos),
        "bos_id": bos,
        "bos_per_window": bos is not None,
        "special_ids": special,
        "tail": "the last partial window is dropped",
        "tokens_hash": hash_tokens(tok),
    }
    cfg["n_text_tokens"] = int(text_mask(tok, config.exclude, special, bos).sum())
    return TokenWindows(tok, doc, used, special, bos, config, cfg)


def hash_tokens(tokens: torch.Tensor) -> str:
    """sha256 of the token matrix (shape and int32 bytes): the identity of a set of windows."""
    h = hashlib.sha256(str(tuple(tokens.shape)).encode())
    h.update(tokens.to(torch.int32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_token_windows(windows: TokenWindows, directory: str | Path) -> Path:
    """Write the token windows artifact (atomically, file by file; cfg.json last)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "tokens.safetensors") as tmp:
        save_file({"tokens": windows.tokens.contiguous(), "doc_index": windows.doc_index.contiguous()}, str(tmp),
                  metadata={"tokens_hash": windows.tokens_hash})
    with atomic_path(directory / "documents.parquet") as tmp:
        pq.write_table(pa.Table.from_pylist(windows.documents), tmp)
    write_cfg(directory, windows.cfg)  # written last: its presence means the artifact is whole
    return directory


def load_token_windows(directory: str | Path) -> TokenWindows:
    """Read a token windows artifact written by `save_token_windows`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = Path(directory)
    cfg_path = directory / "cfg.json"
    if not cfg_path.exists():
        raise ArtifactError(f"no token windows at {directory} (cfg.json missing): run `saelab tokens` or "
                            "`saelab demo` first.")
    cfg = read_json_object(cfg_path, "the token windows' config")
    try:
        with safe_open(str(directory / "tokens.safetensors"), "pt") as f:
            tokens, doc_index = f.get_tensor("tokens"), f.get_tensor("doc_index")
        tokens_hash = cfg["tokens_hash"]
        documents = pq.read_table(directory / "documents.parquet").to_pylist()
        config = TokenizeConfig(ctx_len=cfg["ctx_len"], n_tokens=cfg["n_tokens"], seed=cfg["seed"],
                                exclude=tuple(cfg["exclude"]))
        special_ids, bos_id = cfg["special_ids"], cfg["bos_id"]
    except (SafetensorError, pa.ArrowException, KeyError, TypeError) as e:
        raise FormatError(f"{directory}: the token windows are damaged ({type(e).__name__}: {str(e)[:200]}); "
                          "rebuild them with `saelab tokens --overwrite` (and remake what was made from them)."
                          ) from None
    if hash_tokens(tokens) != tokens_hash:
        raise ArtifactError(f"{directory}/tokens.safetensors does not match its cfg.json (hash differs): re-create it.")
    return TokenWindows(tokens, doc_index, documents, special_ids, bos_id, config, cfg)
