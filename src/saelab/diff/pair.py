"""A model pair for diffing: checks, paired token windows, paired activations on disk.

A crosscoder reads the base and the target model at the *same token*: latent j of the
base half and latent j of the target half must describe one position of one text. That
holds only when both models cut text into the same tokens, so `check_pair` refuses
models whose ordinary vocabularies differ or that cut the probe texts differently, and
models whose hidden sizes differ at a chosen layer. Special and added tokens may differ (a
distilled or chat-tuned model often renames or adds them, e.g. DeepSeek-R1-Distill-Qwen
vs Qwen2): windows are cut once with the base tokenizer and both models read the same ids,
so such differences are recorded as notes (`tokenizer_notes`), not refused.

Paired windows are ordinary `TokenWindows` (corpus windows first, then one window per
category prompt), so they are stored, hashed and read like every other workspace's
windows. Each window belongs to one group: `corpus` or a category name. A prompt goes
through the tokenizer's chat template when it has one (as a single user turn, with the
generation prompt), else it is tokenized as plain text; its window is right-padded, and
pad positions carry `doc_index == -1` and are never read.

The paired activations themselves are an artifact of the shared activation layer
(`saelab.activations.paired`): written per layer and shard, resumed, read back shuffled.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..activations.paired import PairedActivations, PairedBatch, valid_mask, write_paired_activations
from ..data.tokens import TokenWindows, hash_tokens
from ..errors import ConfigError, ModelError
from ..models.load import LoadedModel

log = logging.getLogger(__name__)

CORPUS_GROUP = "corpus"
CATEGORY_SOURCE = "category/"
# Strings whose tokenization must agree: words, digits, code, non-Latin text, whitespace.
_PROBES = ("The quick brown fox jumps over 13 lazy dogs.", "def f(x):\n    return x**2  # ok",
           "Zürich, 東京, Москва — naïve café", "   spaces\tand\ttabs\n\n")


# --- the pair -------------------------------------------------------------------------


def check_pair(base: LoadedModel, target: LoadedModel, layers: Sequence[int] | None = None) -> list[int]:
    """Check that `base` and `target` can be diffed at `layers`; return the layers (all if None).

    Raises:
        ModelError: the tokenizers differ (ordinary vocabulary, or how text is cut). Differences in
            special or added tokens are logged as warnings (see `tokenizer_notes`).
        ConfigError: a layer is out of range, or the hidden sizes differ at a layer.
    """
    why = _tokenizer_difference(base.tokenizer, target.tokenizer)
    if why:
        raise ModelError(
            f"base {base.spec!r} and target {target.spec!r} do not share a tokenizer ({why}). A crosscoder "
            "compares the two models' activations at the same token, so both must cut text into identical "
            "tokens; diff a model against a fine-tune of it, or two models of one family "
            "(e.g. Qwen/Qwen2.5-Math-1.5B and deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B, distilled from it)."
        )
    for note in tokenizer_notes(base.tokenizer, target.tokenizer):
        log.warning("base %s vs target %s: %s", base.spec, target.spec, note)
    n_layers = min(base.n_layers, target.n_layers)
    if layers is None:
        layers = range(n_layers)
    layers = [int(layer) for layer in layers]
    if not layers:
        raise ConfigError(f"layers: got none; give layer indices in 0–{n_layers - 1}.")
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad:
        depth = (f"base has {base.n_layers} layers, target {target.n_layers}" if base.n_layers != target.n_layers
                 else f"both models have {n_layers} layers")
        raise ConfigError(f"layers: got {bad}, out of range; valid layers are 0–{n_layers - 1} ({depth}).")
    for layer in layers:
        d_base, d_target = _hidden_size(base, layer), _hidden_size(target, layer)
        if d_base != d_target:
            raise ConfigError(
                f"layer {layer}: the base model's residual stream has size {d_base}, the target's {d_target}; "
                "a crosscoder needs the same hidden size in both models at every chosen layer."
            )
    return sorted(dict.fromkeys(layers))


def _hidden_size(lm: LoadedModel, layer: int) -> int:
    return int(getattr(lm.config, "hidden_size"))  # the residual stream has one width at every layer


def _ordinary_vocab(tok: Any) -> dict[str, int]:
    """The tokenizer's vocabulary without its added tokens (the model's own pieces)."""
    added = set(tok.get_added_vocab())
    return {t: i for t, i in tok.get_vocab().items() if t not in added}


def _tokenizer_difference(a: Any, b: Any) -> str:
    """Why two tokenizers cannot serve one crosscoder, or "" when they cut text identically."""
    va, vb = _ordinary_vocab(a), _ordinary_vocab(b)
    if len(va) != len(vb):
        return f"vocabulary sizes {len(va):,} vs {len(vb):,} (added tokens not counted)"
    if va != vb:
        diff = sorted(set(va.items()) ^ set(vb.items()))[:3]
        return f"vocabularies differ, e.g. {diff}"
    for probe in _PROBES:
        if list(a(probe, add_special_tokens=False).input_ids) != list(b(probe, add_special_tokens=False).input_ids):
            return f"the text {probe!r} is tokenized differently"
    return ""


def tokenizer_notes(a: Any, b: Any) -> list[str]:
    """Differences in special and added tokens between two tokenizers that otherwise cut text alike.

    They do not stop a diff (both models read the base tokenizer's ids), but a special token that means
    something else to the target (an EOS that is not its EOS, a BOS it was trained with and now lacks)
    shifts its activations near those positions; the report lists these notes among its limits.
    """
    notes = []
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        x, y = getattr(a, attr, None), getattr(b, attr, None)
        if x != y:
            notes.append(f"{attr} {x} vs {y}")
    added_a, added_b = a.get_added_vocab(), b.get_added_vocab()
    if added_a != added_b:
        only_a = sorted(set(added_a.items()) - set(added_b.items()))
        only_b = sorted(set(added_b.items()) - set(added_a.items()))
        notes.append(f"added tokens differ: {len(only_a)} only in the base (e.g. {only_a[:3]}), {len(only_b)} only in "
                     f"the target (e.g. {only_b[:3]}); windows use the base tokenizer's ids")
    return notes


# --- paired windows -------------------------------------------------------------------


def paired_windows(corpus: TokenWindows, tokenizer: Any, categories: dict[str, list[str]]) -> TokenWindows:
    """The corpus windows followed by one window per category prompt, each labelled with its group.

    Prompts go through `tokenizer`'s chat template when it has one (a user turn plus the
    generation prompt), else are tokenized as text; windows are `corpus.ctx_len` long,
    right-padded (pad positions have `doc_index == -1`), longer prompts are cut.

    Example:
        >>> windows = paired_windows(corpus_windows, lm.tokenizer, load_categories())
        >>> names, group = window_groups(windows)      # ["corpus", "reasoning", ...], [n_windows]
    """
    ctx = corpus.ctx_len
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    templated = bool(getattr(tokenizer, "chat_template", None))
    rows, docs, n_cut = [], [], 0
    for name, prompts in categories.items():
        for i, prompt in enumerate(prompts):
            ids = _prompt_ids(tokenizer, prompt, templated)
            n_cut += len(ids) > ctx
            ids = ids[:ctx]
            rows.append(ids)
            docs.append({"source": CATEGORY_SOURCE + name, "doc_id": f"{name}/{i}", "n_tokens": len(ids)})
    if n_cut:
        log.warning("%d prompts are longer than ctx_len=%d and were cut", n_cut, ctx)
    tokens = torch.full((len(rows), ctx), int(pad), dtype=torch.int32)
    doc_index = torch.full((len(rows), ctx), -1, dtype=torch.int32)
    for r, ids in enumerate(rows):
        tokens[r, : len(ids)] = torch.tensor(ids, dtype=torch.int32)
        doc_index[r, : len(ids)] = len(corpus.documents) + r
    all_tokens = torch.cat([corpus.tokens, tokens])
    all_docs = torch.cat([corpus.doc_index, doc_index])
    cfg = {**corpus.cfg, "artifact": "paired_windows", "n_windows": int(all_tokens.shape[0]),
           "n_corpus_windows": corpus.n_windows, "n_tokens_total": all_tokens.numel(),
           "categories": {name: len(p) for name, p in categories.items()},
           "prompt_format": "chat template (one user turn + generation prompt)" if templated else "plain text",
           "pad_id": int(pad), "padding": "prompt windows are right-padded; pad positions have doc_index -1 "
                                          "and are excluded",
           "tokens_hash": hash_tokens(all_tokens)}
    windows = TokenWindows(all_tokens, all_docs, list(corpus.documents) + docs, corpus.special_ids, corpus.bos_id,
                           corpus.config, cfg)
    cfg["n_text_tokens"] = int(valid_mask(windows).sum())
    return windows


def _prompt_ids(tokenizer: Any, prompt: str, templated: bool) -> list[int]:
    if templated:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False).input_ids)  # the template writes BOS itself
    return list(tokenizer(prompt).input_ids)


def window_groups(windows: TokenWindows) -> tuple[list[str], np.ndarray]:
    """(group names, int64 [n_windows] group id per window); group 0 is always `corpus`."""
    names = [CORPUS_GROUP]
    for d in windows.documents:
        src = str(d["source"])
        if src.startswith(CATEGORY_SOURCE) and src[len(CATEGORY_SOURCE):] not in names:
            names.append(src[len(CATEGORY_SOURCE):])
    index = {name: i for i, name in enumerate(names)}
    first_doc = windows.doc_index[:, 0].numpy()
    group = np.array([index.get(_group_of(windows.documents[d]["source"]), 0) for d in first_doc], dtype=np.int64)
    return names, group


def _group_of(source: str) -> str:
    return source[len(CATEGORY_SOURCE):] if source.startswith(CATEGORY_SOURCE) else CORPUS_GROUP


def extract_activations_for_comparison(
    base: LoadedModel, target: LoadedModel, windows: TokenWindows, layers: Sequence[int], out_dir: str | Path, *,
    batch_size: int = 8, dtype: torch.dtype | str = torch.bfloat16, resume: bool = True, shard_windows: int = 64,
    progress: bool = True,
) -> PairedActivations:
    """`saelab.activations.write_paired_activations` for a pair of models to diff: `check_pair` first (one
    tokenizer; the layers exist in both, with one hidden size), and each window's group (`window_groups`)
    stored per token. The arguments are those of `write_paired_activations`, which documents them.

    Example:
        >>> acts = extract_activations_for_comparison(base, target, windows, [6], "diff/activations")
        >>> next(acts.batches(6, 4096)).shape       # [4096, 2, d]: [:, 0] base, [:, 1] target
    """
    layers = check_pair(base, target, layers)
    return write_paired_activations(base, target, windows, layers, out_dir, groups=window_groups(windows),
                                    batch_size=batch_size, dtype=dtype, resume=resume, shard_windows=shard_windows,
                                    progress=progress)


__all__ = ["PairedActivations", "PairedBatch", "check_pair", "extract_activations_for_comparison", "paired_windows",
           "tokenizer_notes", "valid_mask", "window_groups"]
