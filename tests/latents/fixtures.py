"""Deterministic tiny inputs for latent-store tests, shared with the subprocess worker.

Everything is built from a seed, so a test process and a worker process (or two torchrun
ranks) build the same model, windows and dictionaries.
"""

from __future__ import annotations

import torch

from saelab.coders import CoderConfig, SparseCoder
from saelab.data.tokens import TokenizeConfig, TokenWindows, hash_tokens
from saelab.models.load import LoadedModel

VOCAB, CTX, N_WINDOWS = 64, 16, 40
SPECIAL = [0, 1, 2]


def tiny_lm(seed: int = 0) -> LoadedModel:
    """A 4-layer random Llama (d_model 32), wrapped as saelab loads models."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      eos_token_id=2, bos_token_id=1, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).eval().requires_grad_(False)
    return LoadedModel(model=model, tokenizer=None, spec="tiny-llama", path="tiny-llama", dtype=torch.float32,
                       device=torch.device("cpu"))


def tiny_windows(seed: int = 0, n_windows: int = N_WINDOWS) -> TokenWindows:
    """Random token windows with EOS (id 2) separators, so `special` exclusion has work to do."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, VOCAB, (n_windows, CTX), generator=g, dtype=torch.int32)
    tokens[torch.rand(tokens.shape, generator=g) < 0.08] = 2
    doc = torch.zeros_like(tokens)
    config = TokenizeConfig(ctx_len=CTX, n_tokens=n_windows * CTX)
    cfg = {"artifact": "tokens", "tokens_hash": hash_tokens(tokens)}
    return TokenWindows(tokens, doc, [], SPECIAL, None, config, cfg)


def tiny_coders(seed: int = 0) -> dict[str, SparseCoder]:
    """Two dictionaries at two hookpoints: a top-k SAE and a ReLU SAE (varying L0)."""
    torch.manual_seed(seed)
    a = SparseCoder(CoderConfig("topk", d_in=32, d_sae=48, k=5, hookpoint="model.layers.1"))
    b = SparseCoder(CoderConfig("relu", d_in=32, d_sae=40, hookpoint="model.layers.2"))
    with torch.no_grad():
        b.b_enc.fill_(-0.05)  # sparse (L0 ≈ 0.8 on this model), a few latents dead
    return {"sae_l1": a, "sae_l2": b}
