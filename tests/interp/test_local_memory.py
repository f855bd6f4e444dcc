"""The in-process client's memory: its output layer never copies its weight once per row of a batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from saelab.interp.clients.local import TransformersClient, contiguous_head


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS is reset through Linux's clear_refs")
def test_the_last_position_of_a_bf16_batch_is_read_without_a_weight_copy_per_row():
    """transformers reads the last position as a strided [B, 1, d] slice; a bf16 linear on it expands the weight
    B times on the CPU (Qwen2.5-1.5B: +3.7 GB at batch 8). With the hook, the peak stays under one weight."""

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(256, 65_536, bias=False, dtype=torch.bfloat16)  # 32 MiB

        def get_output_embeddings(self) -> torch.nn.Module:
            return self.head

    model = Model().requires_grad_(False)  # as saelab loads models
    contiguous_head(model)
    hidden = torch.randn(16, 40, 256, dtype=torch.bfloat16)
    weight_bytes = model.head.weight.numel() * 2
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss("VmRSS")
    with torch.inference_mode():
        logits = model.head(hidden[:, -1:, :])  # as `logits_to_keep=1` slices it
    assert _rss("VmHWM") - before < weight_bytes
    assert torch.equal(logits, model.head(hidden[:, -1:, :].contiguous()))


def test_the_hook_is_added_once_and_leaves_the_answers_alone():
    from .test_run import PLANTED, _tiny_lm

    lm = _tiny_lm(seed=0)
    prompts = [[{"role": "user", "content": f"Text: the {w}"}] for w in PLANTED]
    client = TransformersClient(lm, batch_size=4)
    TransformersClient(lm, batch_size=4)
    hooks = lm.model.get_output_embeddings()._forward_pre_hooks
    assert len(hooks) == 1
    hooked = [a.prob_yes for a in client.judge(prompts)]
    hooks.clear()  # the same model, read as before the hook
    assert hooked == pytest.approx([a.prob_yes for a in client.judge(prompts)])
