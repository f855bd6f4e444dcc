"""The `tokens` stage: corpus → token windows in the workspace (written once)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from .._io import read_json
from ..errors import ArtifactError
from ..models.load import LoadedModel
from ..workspace import Workspace
from .corpus import DEFAULT_CORPUS, load_corpus
from .tokens import (
    DEFAULT_EXCLUDE,
    Exclude,
    TokenizeConfig,
    TokenWindows,
    load_token_windows,
    save_token_windows,
    tokenize_corpus,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokensConfig:
    """What the token windows of a workspace are made of."""

    corpus: str = DEFAULT_CORPUS
    """Corpus spec (see `load_corpus`)."""
    split: str = "train"
    """Dataset split (Hugging Face datasets)."""
    column: str = "text"
    """Text column (datasets, jsonl, parquet)."""
    ctx_len: int = 256
    n_tokens: int = 1_000_000
    seed: int = 0
    exclude: tuple[Exclude, ...] = DEFAULT_EXCLUDE

    def tokenize_config(self) -> TokenizeConfig:
        return TokenizeConfig(ctx_len=self.ctx_len, n_tokens=self.n_tokens, seed=self.seed, exclude=self.exclude)


def _same(cfg: dict, config: TokensConfig, model: str) -> bool:
    want = {**asdict(config), "model": model, "exclude": list(config.exclude)}
    keys = ["corpus_spec", "split", "column", "ctx_len", "n_tokens", "seed", "model", "exclude"]
    return all(cfg.get(k) == want.get("corpus" if k == "corpus_spec" else k) for k in keys)


def run(config: TokensConfig, workspace: Workspace, lm: LoadedModel, overwrite: bool = False) -> TokenWindows:
    """Build the workspace's token windows, or reuse them if they were built the same way.

    Token windows are written once: a workspace whose windows were made differently is
    refused unless `overwrite` (every later artifact depends on them).
    """
    cfg_path = workspace.tokens / "cfg.json"
    if cfg_path.exists() and not overwrite:
        cfg = read_json(cfg_path)
        if _same(cfg, config, lm.spec):
            log.info("reusing token windows in %s", workspace.tokens)
            return load_token_windows(workspace.tokens)
        raise ArtifactError(
            f"{workspace.tokens} holds token windows made differently (corpus {cfg.get('corpus')!r}, "
            f"n_tokens {cfg.get('n_tokens')}, ctx_len {cfg.get('ctx_len')}, model {cfg.get('model')!r}); "
            "every artifact of a workspace shares them: use another --workspace, or --overwrite to rebuild."
        )
    corpus = load_corpus(config.corpus, split=config.split, column=config.column)
    windows = tokenize_corpus(corpus, lm.tokenizer, config.tokenize_config(),
                              max_positions=lm.max_positions, model_name=lm.spec)
    windows.cfg.update({"corpus_spec": config.corpus, "split": config.split, "column": config.column})
    save_token_windows(windows, workspace.tokens)
    log.info("wrote %d windows x %d tokens to %s", windows.n_windows, windows.ctx_len, workspace.tokens)
    return windows
