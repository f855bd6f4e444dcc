"""export_saelens: the export reads back identically, and (peers) SAELens itself encodes it identically."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from saelab.coders import SparseCoder, export_saelens, load_dictionary
from saelab.errors import ConfigError

from .test_native import inputs, make_cfg, randomized

EXPORTABLE = [("relu", "sae"), ("jumprelu", "sae"), ("topk", "sae"), ("batchtopk", "sae"), ("matryoshka", "sae"),
              ("relu", "transcoder"), ("jumprelu", "transcoder"), ("batchtopk", "transcoder")]
SAELENS_VENV_PYTHON = Path(__file__).resolve().parents[2] / ".venv-saelens" / "bin" / "python"


def exported(tmp_path: Path, architecture: str, kind: str) -> tuple[SparseCoder, Path]:
    coder = randomized(make_cfg(architecture, kind))
    if coder.threshold is not None and coder.threshold.ndim == 0:
        coder.threshold.fill_(0.2)
    return coder, export_saelens(coder, tmp_path / f"{architecture}-{kind}")


@pytest.mark.parametrize("architecture,kind", EXPORTABLE, ids=[f"{a}-{k}" for a, k in EXPORTABLE])
def test_export_reads_back_identically(tmp_path, architecture, kind):
    coder, path = exported(tmp_path, architecture, kind)
    assert sorted(p.name for p in path.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    back = load_dictionary(path)
    assert back.cfg.source_format == "saelens" and back.cfg.hookpoint == coder.cfg.hookpoint
    x = inputs(coder)
    assert torch.equal(back.encode(x), coder.encode(x))
    assert torch.equal(back(x).x_hat, coder(x).x_hat)


def test_export_refuses_what_saelens_cannot_hold(tmp_path):
    with pytest.raises(ConfigError, match="export_saelens: got a crosscoder"):
        export_saelens(SparseCoder(make_cfg("topk", "crosscoder")), tmp_path / "cc")
    with pytest.raises(ConfigError, match="export_saelens: got a transcoder topk"):
        export_saelens(SparseCoder(make_cfg("topk", "transcoder")), tmp_path / "tc")


_SAELENS_CHECK = """
import sys, torch
from safetensors.torch import load_file, save_file
from sae_lens import SAE
sae = SAE.load_from_disk(sys.argv[1])
x = load_file(sys.argv[2])["x"]
with torch.no_grad():
    save_file({"latents": sae.encode(x).contiguous(), "x_hat": sae(x).contiguous()}, sys.argv[3])
print(type(sae).__name__)
"""


def _saelens_python() -> str:
    try:
        import sae_lens  # noqa: F401
        return sys.executable
    except ImportError:
        if SAELENS_VENV_PYTHON.exists():
            return str(SAELENS_VENV_PYTHON)
    pytest.skip("needs sae-lens (here or in .venv-saelens)")


@pytest.mark.peers
@pytest.mark.parametrize("architecture,kind", EXPORTABLE, ids=[f"{a}-{k}" for a, k in EXPORTABLE])
def test_saelens_loads_the_export_and_encodes_identically(tmp_path, architecture, kind):
    python = _saelens_python()
    coder, path = exported(tmp_path, architecture, kind)
    x = inputs(coder)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    done = subprocess.run([python, "-c", _SAELENS_CHECK, str(path), str(tmp_path / "x.safetensors"),
                           str(tmp_path / "out.safetensors")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = load_file(str(tmp_path / "out.safetensors"))
    with torch.no_grad():
        ours = coder(x)
    torch.testing.assert_close(theirs["latents"], ours.latents, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(theirs["x_hat"], ours.x_hat, rtol=1e-5, atol=1e-5)


def test_export_cfg_is_saelens_v6(tmp_path):
    _, path = exported(tmp_path, "topk", "sae")
    cfg = json.loads((path / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["k"] == 4 and cfg["metadata"]["sae_lens_version"].startswith("6.")
    assert set(load_file(str(path / "sae_weights.safetensors"))) == {"W_enc", "b_enc", "W_dec", "b_dec"}
