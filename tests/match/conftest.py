"""One intra-op thread for the tiny models: on a busy 2-core machine, two OpenMP threads
spin against other processes and a 5 ms forward takes 300 ms."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
