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

Activations are written per layer and per shard of windows
(`layer_06/shard_00000.safetensors`: `base` and `target` [n, d] at the valid positions,
with `window`, `pos`, `group` [n]), atomically; a finished shard is not recomputed.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .._io import atomic_path, read_json, write_cfg, write_json
from ..activations.capture import ActivationReader
from ..data.tokens import TokenWindows, hash_tokens, load_token_windows, save_token_windows, text_mask
from ..errors import ArtifactError, ConfigError, ModelError
from ..models.hookpoints import resolve_hookpoint
from ..models.load import LoadedModel, parse_dtype
from ..progress import token_progress

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


def valid_mask(windows: TokenWindows) -> torch.Tensor:
    """bool [n_windows, ctx_len]: text positions that are not padding (see TokenizeConfig.exclude)."""
    mask = text_mask(windows.tokens, windows.config.exclude, windows.special_ids, windows.bos_id)
    return mask & (windows.doc_index >= 0)


# --- paired activations ---------------------------------------------------------------


def extract_activations_for_comparison(
    base: LoadedModel, target: LoadedModel, windows: TokenWindows, layers: Sequence[int], out_dir: str | Path, *,
    batch_size: int = 8, dtype: torch.dtype | str = torch.bfloat16, resume: bool = True, shard_windows: int = 64,
    progress: bool = True,
) -> "PairedActivations":
    """Run both models on the same windows; store residual-stream activations (after block L) per layer.

    Each forward stops after the deepest layer. Only valid positions are stored
    (`valid_mask`: sink/BOS/special tokens as the windows' config excludes them, and padding).

    Args:
        layers: decoder-layer indices; the hookpoint is `resid_post.L`.
        out_dir: the artifact directory (`cfg.json`, `tokens/`, `layer_LL/shard_SSSSS.safetensors`,
            `manifest.json` written last).
        dtype: stored dtype, `bfloat16` (half the disk of float32) | `float16` | `float32`; readers return float32.
        resume: keep finished shards of a run with the same inputs; False recomputes everything.
        shard_windows: windows per shard (the unit of resumption).

    Example:
        >>> acts = extract_activations_for_comparison(base, target, windows, [6], "diff/activations")
        >>> next(acts.batches(6, 4096)).shape       # [4096, 2, d]: [:, 0] base, [:, 1] target
    """
    layers = check_pair(base, target, layers)
    dtype = parse_dtype(dtype)
    if batch_size <= 0 or shard_windows <= 0:
        raise ConfigError(f"batch_size / shard_windows: got {batch_size} / {shard_windows}; "
                          "expected positive integers.")
    out = Path(out_dir)
    names, group = window_groups(windows)
    cfg = {"artifact": "paired_activations", "base": {**base.describe(), "weights": base.weights_hash},
           "target": {**target.describe(), "weights": target.weights_hash},
           "layers": layers, "hookpoints": [f"resid_post.{layer}" for layer in layers], "d_model": base.d_model,
           "tokens_hash": windows.tokens_hash, "n_windows": windows.n_windows, "ctx_len": windows.ctx_len,
           "shard_windows": shard_windows, "dtype": str(dtype).removeprefix("torch."), "groups": names,
           "excluded": [*windows.config.exclude, "pad"]}
    _prepare(out, cfg, windows, resume)
    mask = valid_mask(windows)
    n_shards = math.ceil(windows.n_windows / shard_windows)
    counts = []
    with token_progress(2 * windows.n_tokens, "paired activations", enabled=progress) as advance:
        for s in range(n_shards):
            lo, hi = s * shard_windows, min((s + 1) * shard_windows, windows.n_windows)
            paths = [_shard_path(out, layer, s) for layer in layers]
            if all(p.exists() for p in paths):
                counts.append(int(mask[lo:hi].sum()))
                advance(2 * (hi - lo) * windows.ctx_len)
                continue
            acts = {which: _read(lm, windows.tokens[lo:hi], mask[lo:hi], layers, batch_size, dtype, advance)
                    for which, lm in (("base", base), ("target", target))}
            win, pos = torch.nonzero(mask[lo:hi], as_tuple=True)  # row-major, like boolean indexing
            meta = {"window": (win + lo).to(torch.int32), "pos": pos.to(torch.int32),
                    "group": torch.from_numpy(group[(win + lo).numpy()]).to(torch.int16)}
            for layer, path in zip(layers, paths):
                with atomic_path(path) as tmp:
                    save_file({"base": acts["base"][layer], "target": acts["target"][layer], **meta}, str(tmp))
            counts.append(int(win.numel()))
    write_json(out / "manifest.json", {"n_shards": n_shards, "shard_tokens": counts, "n_tokens": sum(counts)})
    return PairedActivations(out)


def _same_model(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """The same weights (an artifact written before weights were recorded: the same path)."""
    return old["weights"] == new["weights"] if "weights" in old else old["path"] == new["path"]


def _prepare(out: Path, cfg: dict[str, Any], windows: TokenWindows, resume: bool) -> None:
    """Start, resume, or (resume=False) restart the artifact at `out`."""
    cfg_path = out / "cfg.json"
    if cfg_path.exists():
        old = read_json(cfg_path)
        same = all(old.get(k) == v for k, v in cfg.items() if k not in ("base", "target")) and \
            all(_same_model(old[k], cfg[k]) for k in ("base", "target"))
        if not resume or not same:
            if resume:
                raise ArtifactError(
                    f"{out} holds paired activations made differently (models, layers, windows or dtype differ); "
                    "use another output directory, or resume=False to recompute."
                )
            for sub in [*out.glob("layer_*"), out / "tokens"]:
                shutil.rmtree(sub, ignore_errors=True)
            (out / "manifest.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "tokens" / "cfg.json").exists():
        save_token_windows(windows, out / "tokens")
    write_cfg(out, cfg)


def _shard_path(out: Path, layer: int, shard: int) -> Path:
    return out / f"layer_{layer:02d}" / f"shard_{shard:05d}.safetensors"


@torch.inference_mode()
def _read(lm: LoadedModel, tokens: torch.Tensor, mask: torch.Tensor, layers: list[int], batch_size: int,
          dtype: torch.dtype, advance) -> dict[int, torch.Tensor]:
    """{layer: [n_valid, d]} of one shard of windows, in `dtype` on the CPU."""
    hooks = {layer: resolve_hookpoint(lm.model, f"resid_post.{layer}") for layer in layers}
    reader = ActivationReader(lm.model, list(hooks.values()))
    parts: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for lo in range(0, tokens.shape[0], batch_size):
        acts = reader(tokens[lo : lo + batch_size].to(lm.device, torch.long))
        m = mask[lo : lo + batch_size].to(lm.device)
        for layer, hp in hooks.items():
            parts[layer].append(acts[hp.name][m].to("cpu", dtype))  # [n_valid, d]
        advance(tokens[lo : lo + batch_size].numel())
    return {layer: torch.cat(p) for layer, p in parts.items()}


class PairedBatch(NamedTuple):
    """A batch of paired activations with where each row comes from."""

    acts: torch.Tensor
    """float32 [n, 2, d]: [:, 0] the base model, [:, 1] the target model, at the same token"""
    window: np.ndarray
    """int64 [n]: window index in the artifact's `tokens/`"""
    pos: np.ndarray
    """int64 [n]: position in the window"""
    group: np.ndarray
    """int64 [n]: group id (index into `PairedActivations.groups`)"""


class PairedActivations:
    """Reader of an artifact written by `extract_activations_for_comparison`.

    Example:
        >>> acts = PairedActivations("diff/activations")
        >>> for x in acts.batches(6, 4096, shuffle_seed=0):   # [n, 2, d] float32
        ...     ...
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        if not (self.directory / "manifest.json").exists():
            raise ArtifactError(f"{self.directory} holds no finished paired activations (manifest.json missing): "
                                "run extract_activations_for_comparison (it resumes) first.")
        self.cfg: dict[str, Any] = read_json(self.directory / "cfg.json")
        self.manifest: dict[str, Any] = read_json(self.directory / "manifest.json")

    @property
    def layers(self) -> list[int]:
        return list(self.cfg["layers"])

    @property
    def n_tokens(self) -> int:
        return int(self.manifest["n_tokens"])

    @property
    def d_model(self) -> int:
        return int(self.cfg["d_model"])

    @property
    def groups(self) -> list[str]:
        return list(self.cfg["groups"])

    def windows(self) -> TokenWindows:
        """The token windows the activations were read on (for contexts of examples)."""
        return load_token_windows(self.directory / "tokens")

    def batches(self, layer: int, batch_size: int, shuffle_seed: int | None = None) -> Iterator[torch.Tensor]:
        """float32 [n, 2, d] batches at `layer` (the last one may be smaller)."""
        for batch in self.batches_with_meta(layer, batch_size, shuffle_seed):
            yield batch.acts

    def batches_with_meta(self, layer: int, batch_size: int, shuffle_seed: int | None = None,
                          buffer_shards: int = 8) -> Iterator[PairedBatch]:
        """`PairedBatch`es at `layer`. With a seed, shards come in random order and rows are
        shuffled within a buffer of `buffer_shards` shards (memory stays bounded)."""
        if layer not in self.layers:
            raise ConfigError(f"layer: got {layer}; these paired activations hold layers {self.layers}.")
        order = np.arange(self.manifest["n_shards"])
        rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
        if rng is not None:
            rng.shuffle(order)
        rest: list[dict[str, torch.Tensor]] = []
        step = buffer_shards if rng is not None else 1
        for lo in range(0, len(order), step):
            parts = rest + [self._load(layer, int(s)) for s in order[lo : lo + step]]
            data = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
            if rng is not None:
                perm = torch.from_numpy(rng.permutation(data["base"].shape[0]))
                data = {k: v[perm] for k, v in data.items()}
            n_full = data["base"].shape[0] // batch_size * batch_size
            for i in range(0, n_full, batch_size):
                yield _batch({k: v[i : i + batch_size] for k, v in data.items()})
            rest = [{k: v[n_full:] for k, v in data.items()}]
        if rest and rest[0]["base"].shape[0]:
            yield _batch(rest[0])

    def _load(self, layer: int, shard: int) -> dict[str, torch.Tensor]:
        with safe_open(str(_shard_path(self.directory, layer, shard)), "pt") as f:
            return {k: f.get_tensor(k) for k in ("base", "target", "window", "pos", "group")}


def _batch(data: dict[str, torch.Tensor]) -> PairedBatch:
    acts = torch.stack([data["base"], data["target"]], dim=1).float()  # [n, 2, d]
    return PairedBatch(acts, data["window"].long().numpy(), data["pos"].long().numpy(), data["group"].long().numpy())
