"""One synthetic workspace with a real diff run, and its report, built once per session (seconds)."""

from __future__ import annotations

import pytest

from saelab.report import ReportConfig, run

from .diff_run import add_diff_run
from .workspace import make_workspace, model_view


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("report-ws"))
    add_diff_run(ws.root)
    return ws


@pytest.fixture(scope="session")
def site(workspace, tmp_path_factory):
    """(index.html path, config) of the report with at most 10 latent pages per dictionary."""
    config = ReportConfig(max_latent_pages=10)
    out = tmp_path_factory.mktemp("report-site")
    return run(config, workspace, out, model_view()), config
