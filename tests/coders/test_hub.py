"""Dictionaries from the Hub, through the real download path: huggingface_hub talks HTTP to a local
server that speaks the Hub's file API (tests/hubserver.py), serving the peer-written fixtures laid
out as the real repos are. Nothing here touches the network."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from saelab.coders import Selector, load_dictionary, resolve_dictionary
from saelab.errors import ConfigError, FormatError, MissingPackageError
from tests.hubserver import HubServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SPARSIFY_REPO = "EleutherAI/sae-SmolLM2-135M-64x"
GEMMA_REPO = "google/gemma-scope-2b-pt-res"
SAELENS_REPO = "jbloom/saelens-fixtures"
LLAMA_SCOPE_REPO = "fnlp/Llama3_1-8B-Base-LXR-4x"
LLAMASCOPE = FIXTURES / "llamascope/Llama3_1-8B-Base-LXR-4x/Llama3_1-8B-Base-L3R-4x"


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst) if src.is_dir() else shutil.copy(src, dst)


def build_repos(root: Path) -> Path:
    """The fixtures in the layouts of real repos (sparsify per-hookpoint folders, a Gemma Scope
    layer/width/L0 tree, a SAELens repo with one folder per SAE), plus files no dictionary needs."""
    sp = root / SPARSIFY_REPO
    for hp in ("layers.3", "layers.3.mlp"):
        _copy(FIXTURES / "sparsify/run" / hp, sp / hp)
    (sp / "README.md").write_text("# sparsify SAEs\n")
    (sp / "big_unrelated.bin").write_bytes(b"\0" * 200_000)
    gs = root / GEMMA_REPO
    npz = FIXTURES / "gemmascope/layer_3/width_256/average_l0_20/params.npz"
    for rel in ("layer_3/width_16k/average_l0_20", "layer_3/width_16k/average_l0_105",
                "layer_3/width_65k/average_l0_90", "layer_4/width_16k/average_l0_100"):
        _copy(npz, gs / rel / "params.npz")
    sl = root / SAELENS_REPO
    for name in ("standard", "topk"):
        _copy(FIXTURES / "saelens" / name, sl / "blocks.3.hook_resid_post" / name)
    for layer in (3, 5):  # a Llama Scope tree: one folder per layer and site
        _copy(LLAMASCOPE, root / LLAMA_SCOPE_REPO / f"Llama3_1-8B-Base-L{layer}R-4x")
    _copy(FIXTURES / "llamascope/Llama3_1-8B-Base-LXTC-4x/Llama3_1-8B-Base-L3TC-4x",
          root / LLAMA_SCOPE_REPO / "Llama3_1-8B-Base-L3TC-4x")
    _copy(FIXTURES / "crosscoders/crosscoder_model_diff",
          root / "ckkissane/crosscoder-tiny" / "blocks.4.hook_resid_pre")
    gated = root / "google/gated-saes"
    _copy(FIXTURES / "sparsify/run/layers.3", gated / "layers.3")
    (gated / ".gated").write_text("hf_secret_token")
    return root


@pytest.fixture
def hub(tmp_path, monkeypatch):
    with HubServer(build_repos(tmp_path / "repos")) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield server


def _same_outputs(coder, fixture: Path) -> None:
    io = load_file(str(fixture / "peer_io.safetensors"))
    with torch.no_grad():
        out = coder(io["x"])
    torch.testing.assert_close(out.latents, io["latents"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.x_hat, io["x_hat"], rtol=1e-5, atol=1e-5)


def test_sparsify_repo_by_hookpoint_downloads_only_that_folder(hub):
    coder = load_dictionary(SPARSIFY_REPO, hookpoint="layers.3.mlp")
    assert coder.cfg.kind == "transcoder" and coder.cfg.source_format == "sparsify"
    _same_outputs(coder, FIXTURES / "sparsify/run/layers.3.mlp")
    assert sorted(p.rsplit("/", 1)[-1] for p in hub.downloads()) == ["cfg.json", "sae.safetensors"]
    assert all("/layers.3.mlp/" in p for p in hub.downloads())
    source = coder.cfg.extra["source"]
    assert source["repo"] == SPARSIFY_REPO and source["path"] == "layers.3.mlp" and source["kind"] == "hub"
    assert source["revision"] == hub.sha(SPARSIFY_REPO) and len(source["revision"]) == 40


def test_second_call_makes_no_request_and_offline_uses_the_cache(hub, monkeypatch):
    first = resolve_dictionary(f"hf://{SPARSIFY_REPO}", selector=Selector(hookpoint="layers.3"))
    n = len(hub.requests)
    again = resolve_dictionary(f"hf://{SPARSIFY_REPO}", selector=Selector(hookpoint="layers.3"))
    assert len(hub.requests) == n and again.path == first.path
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    coder = load_dictionary(SPARSIFY_REPO, hookpoint="resid_post.3")  # an alias of the folder's name
    _same_outputs(coder, FIXTURES / "sparsify/run/layers.3")
    assert len(hub.requests) == n
    with pytest.raises(FormatError, match=r"layers\.3\.mlp.*not in the Hugging Face cache and HF_HUB_OFFLINE"):
        load_dictionary(SPARSIFY_REPO, hookpoint="layers.3.mlp")  # listed, but its files were never fetched
    with pytest.raises(FormatError, match=r"HF_HUB_OFFLINE is set and this repo has not been resolved"):
        load_dictionary(GEMMA_REPO, selector=Selector(layer=3, width="16k", l0="100"))
    assert len(hub.requests) == n


def test_gemma_scope_tree_by_layer_width_and_nearest_l0(hub):
    d = resolve_dictionary(GEMMA_REPO, selector=Selector(layer=3, width="16k", l0="100"))
    assert d.source["path"] == "layer_3/width_16k/average_l0_105"
    assert d.name == "gemma-scope-2b-pt-res__layer_3__width_16k__average_l0_105"
    assert hub.downloads() == [f"/{GEMMA_REPO}/resolve/{hub.sha(GEMMA_REPO)}/"
                               "layer_3/width_16k/average_l0_105/params.npz"]
    coder = load_dictionary(GEMMA_REPO, selector=Selector(layer=3, width="16384", l0="30"))
    assert coder.cfg.extra["source"]["path"].endswith("average_l0_20")
    _same_outputs(coder, FIXTURES / "gemmascope/layer_3/width_256/average_l0_20")
    assert coder.cfg.hookpoint == "resid_post.3" and coder.cfg.model == "google/gemma-2-2b"
    sub = resolve_dictionary(f"{GEMMA_REPO}/layer_4@main", selector=Selector(width="16k"))
    assert sub.source["path"] == "layer_4/width_16k/average_l0_100" and sub.source["requested_revision"] == "main"


def test_ambiguous_tree_and_selector_matching_nothing_list_what_is_there(hub):
    with pytest.raises(FormatError, match=r"holds 4 dictionaries: layer_3/width_16k/average_l0_20, .*pick one with "
                                          r"--layer, --width, --l0"):
        resolve_dictionary(GEMMA_REPO)
    with pytest.raises(FormatError, match=r"no dictionary matches --layer 9; the tree holds 4: layer_3/"):
        resolve_dictionary(GEMMA_REPO, selector=Selector(layer=9))
    with pytest.raises(FormatError, match=r"holds 2 dictionaries: layers\.3, layers\.3\.mlp; pick one with "
                                          r"--hookpoint"):
        resolve_dictionary(SPARSIFY_REPO)


def test_llama_scope_tree_by_layer_and_site(hub):
    coder = load_dictionary(LLAMA_SCOPE_REPO, selector=Selector(layer=3, site="R"))
    assert coder.cfg.source_format == "llamascope" and coder.cfg.kind == "sae"
    assert coder.cfg.extra["source"]["path"] == "Llama3_1-8B-Base-L3R-4x"
    _same_outputs(coder, LLAMASCOPE)
    fetched = sorted(p.split("/resolve/")[1].split("/", 1)[1] for p in hub.downloads())
    assert fetched == ["Llama3_1-8B-Base-L3R-4x/checkpoints/final.safetensors",
                       "Llama3_1-8B-Base-L3R-4x/hyperparams.json"]
    assert load_dictionary(LLAMA_SCOPE_REPO, selector=Selector(layer=3, site="transcoder")).cfg.kind == "transcoder"
    with pytest.raises(FormatError, match=r"holds 2 dictionaries matching --layer 3: .*L3R-4x, .*L3TC-4x; pick one "
                                          r"with --site"):
        load_dictionary(LLAMA_SCOPE_REPO, selector=Selector(layer=3))


def test_diff_crosscoder_file_takes_a_hub_repo(hub):
    from saelab.coders import load_crosscoder

    coder = load_crosscoder("ckkissane/crosscoder-tiny")
    assert coder.cfg.kind == "crosscoder" and coder.cfg.n_sources == 2
    assert coder.source["repo"] == "ckkissane/crosscoder-tiny" and coder.source["path"] == "blocks.4.hook_resid_pre"
    reference = load_dictionary(FIXTURES / "crosscoders/crosscoder_model_diff")
    torch.testing.assert_close(coder.W_dec, reference.W_dec)


def test_saelens_repo_folder_and_revision_pinned_by_commit(hub):
    sha = hub.sha(SAELENS_REPO)
    coder = load_dictionary(f"{SAELENS_REPO}/blocks.3.hook_resid_post/topk@{sha}")
    assert coder.cfg.architecture == "topk" and coder.cfg.extra["source"]["revision"] == sha
    _same_outputs(coder, FIXTURES / "saelens/topk")


@pytest.mark.parametrize("spec, error, pattern", [
    ("nobody/no-such-repo", ConfigError, r"nobody/no-such-repo: no such repo on http://127\.0\.0\.1:\d+ \(or it is "
                                         r"private: set HF_TOKEN\)"),
    (f"{SPARSIFY_REPO}@v9", ConfigError, r"revision 'v9' not found; give a branch, tag or commit hash"),
    ("google/gated-saes", ConfigError, r"google/gated-saes: a gated repo; accept its terms .* set HF_TOKEN"),
    (f"{SPARSIFY_REPO}/nothing/here", FormatError, r"the repo has no files under 'nothing/here'; its top-level "
                                                   r"entries: README\.md, big_unrelated\.bin, layers\.3"),
    ("saelens:gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical", MissingPackageError,
     r"sae-lens is not installed .*google/gemma-scope-2b-pt-res --layer 12 --width 16k --l0"),
    ("saelens:no-slash", ConfigError, r"saelens:RELEASE/SAE_ID"),
    ("not a spec at all", ConfigError, r"neither a dictionary of the workspace.*Hub repo"),
])
def test_bad_specs_are_one_line(hub, spec, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        load_dictionary(spec)
    assert "\n" not in str(info.value)


def test_gated_repo_with_token_downloads_and_the_token_is_recorded_nowhere(hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")
    coder = load_dictionary("google/gated-saes")
    _same_outputs(coder, FIXTURES / "sparsify/run/layers.3")
    assert "hf_secret_token" not in repr(coder.cfg.to_dict())
    listings = list((tmp_path / "hf-cache" / ".saelab-listings").rglob("*.json"))
    assert listings and all("hf_secret_token" not in p.read_text() for p in listings)


def test_interrupted_downloads_are_resumed_and_a_partial_file_is_never_read(hub, tmp_path):
    fixture = FIXTURES / "sparsify/run/layers.3"
    hub.cuts["layers.3/sae.safetensors"] = 1  # cut once: huggingface_hub resumes with a range request
    _same_outputs(load_dictionary(SPARSIFY_REPO, hookpoint="layers.3"), fixture)
    assert sum(p.endswith("layers.3/sae.safetensors") for p in hub.downloads()) == 2
    hub.cuts["layers.3.mlp/sae.safetensors"] = 99  # cut every time: the call fails, nothing half-written is kept
    with pytest.raises(FormatError,
                       match=r"could not download from http://127\.0\.0\.1:\d+ .*HF_HUB_OFFLINE=1") as info:
        load_dictionary(SPARSIFY_REPO, hookpoint="layers.3.mlp")
    assert "\n" not in str(info.value)
    snapshot = next((tmp_path / "hf-cache").glob("models--EleutherAI--*/snapshots/*"))
    assert not (snapshot / "layers.3.mlp/sae.safetensors").exists()
    hub.cuts.clear()
    _same_outputs(load_dictionary(SPARSIFY_REPO, hookpoint="layers.3.mlp"), FIXTURES / "sparsify/run/layers.3.mlp")
