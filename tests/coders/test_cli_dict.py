"""`saelab dict info`: the facts of a dictionary, and one-line errors (run in-process)."""

import json
from pathlib import Path

from ..conftest import run_cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def saelab(capsys, *args: str) -> tuple[int, str, str]:
    code = run_cli(*args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_dict_info_table(capsys):
    code, out, err = saelab(capsys, "dict", "info", str(FIXTURES / "saelens/topk"))
    assert code == 0, err
    for needle in ("topk", "sae", "64", "256", "blocks.3.hook_resid_post", "saelens", "tiny-test-model"):
        assert needle in out


def test_dict_info_json_and_hookpoint(capsys):
    code, out, err = saelab(capsys, "dict", "info", str(FIXTURES / "sparsify/run"), "--hookpoint", "layers.3.mlp",
                            "-o", "json")
    assert code == 0, err
    info = json.loads(out)
    assert (info["kind"], info["k"], info["source_format"], info["skip"]) == ("transcoder", 8, "sparsify", True)


def test_dict_info_errors_are_one_line(capsys):
    code, _, err = saelab(capsys, "dict", "info", str(FIXTURES / "sparsify/run"))
    assert code == 2 and "holds 2 dictionaries: layers.3, layers.3.mlp" in err.replace("\n", " ")
    assert "Traceback" not in err
    code, _, err = saelab(capsys, "dict", "info", str(FIXTURES / "saelens/topk"), "-o", "yaml")
    assert code == 2 and "--output: got 'yaml'" in err


def test_dict_info_takes_a_workspace_name(capsys, tmp_path):
    """A name of the workspace is a spec like every command's (`saelab dict info full -w WS`)."""
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(FIXTURES / "saelens/topk", ws / "dictionaries" / "mine")
    code, out, err = saelab(capsys, "dict", "info", "mine", "-w", str(ws), "-o", "json")
    assert code == 0, err
    assert json.loads(out)["path"] == str(ws / "dictionaries" / "mine")
