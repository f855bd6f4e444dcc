"""A tiny base/target pair for pipeline tests: a random 3-layer Llama and a copy whose layer-1 MLP
is perturbed, sharing a word-level tokenizer; a fast pipeline config (the corpus: tests.conftest.corpus_file)."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import torch

from saelab.diff.naming import NAMING_EXAMPLES, NamingConfig
from saelab.diff.pipeline import DiffConfig
from saelab.train import CrosscoderConfig
from tests.conftest import _wrap, make_tokenizer

CHANGED_LAYER = 1


def tiny_pair(hidden: int = 32, n_layers: int = 3, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = make_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=128, eos_token_id=2, bos_token_id=1, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    target = copy.deepcopy(model)
    w = target.model.layers[CHANGED_LAYER].mlp.down_proj.weight
    with torch.no_grad():
        w.add_(0.3 * torch.randn_like(w))
    base_lm, target_lm = _wrap(model, tok, "tiny-base"), _wrap(target, tok, "tiny-target")
    base_lm.path, target_lm.path = "tiny-base", "tiny-target"
    return base_lm, target_lm


def fast_config(corpus: Path, **kw) -> DiffConfig:
    base = dict(corpus=str(corpus), n_tokens=8192, ctx_len=64, n_sweep_windows=8,
                crosscoder=CrosscoderConfig(d_sae=64, k=4, n_tokens=16384, batch_size=512),
                naming=NamingConfig(explainer="top-tokens", examples=replace(NAMING_EXAMPLES, min_examples=3),
                                    n_target_only=2, n_base_only=1, n_changed=2))
    base.update(kw)
    return DiffConfig(**base)
