"""`saelab dict info`: the facts of a dictionary, and one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def saelab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from saelab.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=300)


def test_dict_info_table():
    r = saelab("dict", "info", str(FIXTURES / "saelens/topk"))
    assert r.returncode == 0, r.stderr
    for needle in ("topk", "sae", "64", "256", "blocks.3.hook_resid_post", "saelens", "tiny-test-model"):
        assert needle in r.stdout


def test_dict_info_json_and_hookpoint():
    r = saelab("dict", "info", str(FIXTURES / "sparsify/run"), "--hookpoint", "layers.3.mlp", "-o", "json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["kind"], info["k"], info["source_format"], info["skip"]) == ("transcoder", 8, "sparsify", True)


def test_dict_info_errors_are_one_line():
    r = saelab("dict", "info", str(FIXTURES / "sparsify/run"))
    assert r.returncode == 2 and "holds 2 dictionaries (layers.3, layers.3.mlp)" in r.stderr
    assert "Traceback" not in r.stderr
    r = saelab("dict", "info", str(FIXTURES / "saelens/topk"), "-o", "yaml")
    assert r.returncode == 2 and "--output: got 'yaml'" in r.stderr
