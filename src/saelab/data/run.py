"""The `tokens` stage: corpus → token windows in the workspace (written once)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from .._io import read_json, read_json_object
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


def built_on(workspace: Workspace, tokens_hash: str | None) -> list[str]:
    """The artifacts of `workspace` built on the token windows `tokens_hash` (latent stores, co-occurrence
    counts, evals, interp runs), as paths relative to the workspace: what rebuilding the windows makes stale."""
    found = []
    for pattern in ("latents/*/cfg.json", "cooc/*/cfg.json", "evals/*/cfg.json", "interp/*/run_config.json"):
        for path in sorted(workspace.root.glob(pattern)):
            try:
                made_on = read_json(path).get("tokens_hash")
            except (OSError, ValueError, AttributeError):
                continue
            if tokens_hash is not None and made_on == tokens_hash:
                found.append(path.parent.relative_to(workspace.root).as_posix())
    return found


def _listed(names: list[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def run(config: TokensConfig, workspace: Workspace, lm: LoadedModel, overwrite: bool = False) -> TokenWindows:
    """Build the workspace's token windows, or reuse them if they were built the same way.

    Token windows are written once: a workspace whose windows were made differently is
    refused unless `overwrite` (every later artifact depends on them; the refusal names the
    artifacts built on them, and a rebuild logs those it leaves stale).
    """
    with workspace.lock("tokens"):
        return _run_locked(config, workspace, lm, overwrite)


def _run_locked(config: TokensConfig, workspace: Workspace, lm: LoadedModel, overwrite: bool) -> TokenWindows:
    cfg_path = workspace.tokens / "cfg.json"
    old = read_json_object(cfg_path, "the token windows' config") if cfg_path.exists() else None
    if old is not None and not overwrite:
        if _same(old, config, lm.spec):
            log.info("reusing token windows in %s", workspace.tokens)
            return load_token_windows(workspace.tokens)
        users = built_on(workspace, old.get("tokens_hash"))
        raise ArtifactError(
            f"{workspace.tokens} holds token windows made differently (corpus {old.get('corpus')!r}, "
            f"n_tokens {old.get('n_tokens')}, ctx_len {old.get('ctx_len')}, model {old.get('model')!r}); "
            "every artifact of a workspace shares them"
            + (f" ({len(users)} are built on these: {_listed(users)})" if users else "")
            + ": keep them with another --workspace, or rebuild them with --overwrite"
            + (" (those artifacts are then stale: rebuild each with its command and --overwrite)." if users else ".")
        )
    corpus = load_corpus(config.corpus, split=config.split, column=config.column)
    windows = tokenize_corpus(corpus, lm.tokenizer, config.tokenize_config(),
                              max_positions=lm.max_positions, model_name=lm.spec)
    windows.cfg.update({"corpus_spec": config.corpus, "split": config.split, "column": config.column})
    save_token_windows(windows, workspace.tokens)
    log.info("wrote %d windows x %d tokens to %s", windows.n_windows, windows.ctx_len, workspace.tokens)
    stale = built_on(workspace, old.get("tokens_hash")) if old and old.get("tokens_hash") != windows.tokens_hash else []
    if stale:
        log.warning("rebuilt the token windows of %s: %d artifacts were built on the old ones and are stale now "
                    "(rebuild each with its command and --overwrite): %s", workspace.root, len(stale), _listed(stale))
    return windows
