"""Every test here runs with one intra-op thread (see `one_thread` in tests/conftest.py)."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield
