"""The front door: `import saelab` exposes every stage's config and run function, and is cheap."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import saelab

STAGES = [("TokensConfig", "run_tokens"), ("ActivationsConfig", "run_activations"), ("TrainConfig", "run_train"),
          ("CacheConfig", "run_cache"), ("EvalConfig", "run_eval"), ("CoocConfig", "run_cooc"),
          ("SfalConfig", "run_sfal"), ("MatchConfig", "run_match"), ("InterpConfig", "run_interp"),
          ("DiffConfig", "run_feature_interpretation_pipeline"), ("ReportConfig", "run_report")]


@pytest.mark.parametrize("name", saelab.__all__)
def test_every_public_name_resolves_to_its_home(name):
    value = getattr(saelab, name)
    module, _, attr = saelab._API[name].partition(":")
    assert value is getattr(importlib.import_module(f"saelab.{module}"), attr or name)
    assert name in dir(saelab)


@pytest.mark.parametrize("config, run", STAGES)
def test_every_stage_has_a_config_and_a_run_function(config, run):
    assert isinstance(getattr(saelab, config), type) and callable(getattr(saelab, run))
    assert {config, run} <= set(saelab.__all__)


def test_from_import_star_and_subpackages():
    names: dict = {}
    exec("from saelab import *", names)
    assert set(saelab.__all__) <= set(names)
    assert saelab.coders.SparseCoder is saelab.SparseCoder  # subpackages stay reachable as attributes
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        saelab.no_such_name  # noqa: B018


def test_import_saelab_loads_no_stage():
    code = ("import sys, saelab; heavy = [m for m in ('torch', 'transformers', 'saelab.coders', 'saelab.interp') "
            "if m in sys.modules]; assert not heavy, heavy")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
