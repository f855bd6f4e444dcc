"""Every test here runs with one intra-op thread (see `one_thread` in tests/conftest.py). `truth` (the synthetic
narrow/wide dictionaries) and `ws` (their workspace, both at one hookpoint) are built once per module that asks."""

import pytest

from .synthetic import build
from .workspaces import SAME_HOOK, make_workspace


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def truth():
    return build()


@pytest.fixture(scope="module")
def ws(tmp_path_factory, truth):
    return make_workspace(tmp_path_factory.mktemp("ws"), truth, SAME_HOOK)
