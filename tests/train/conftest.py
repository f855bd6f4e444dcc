"""Fixtures of the training tests: synthetic sparse activations, one intra-op thread."""

from __future__ import annotations

import pytest
import torch

from .fixtures import Sparse, make_sparse


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one thread is faster than two contending ones on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sparse() -> Sparse:
    return make_sparse()


@pytest.fixture(scope="module")
def sparse_test() -> Sparse:
    """Held-out tokens from the same dictionary as `sparse`."""
    return make_sparse(n_windows=64, token_seed=99)

