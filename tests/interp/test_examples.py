"""Examples: train and test are disjoint, activations are the store's, sources of negatives behave."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from saelab.data.tokens import load_token_windows
from saelab.errors import ConfigError
from saelab.interp.config import ExampleConfig
from saelab.interp.examples import build_examples
from saelab.interp.negatives import FaissSource, NegativeSource
from saelab.latents.store import LatentStore

from .conftest import RARE


def _setup(planted):
    ws, tok = planted
    store = LatentStore(ws.latents("synth"))
    return ws, tok, store, load_token_windows(ws.tokens)


@pytest.mark.parametrize("train_type", ["top", "random", "quantiles", "mix"])
@pytest.mark.parametrize("center", [True, False])
def test_train_and_test_are_disjoint(planted, train_type, center):
    ws, tok, store, windows = _setup(planted)
    cfg = ExampleConfig(example_ctx_len=8, n_examples_train=10, n_examples_test=12, n_non_activating=10,
                        min_examples=5, train_type=train_type, center_examples=center)
    for latent in range(3):
        ex = build_examples(store, windows, latent, cfg, NegativeSource(store, 8))
        assert len(ex.train) == 10 and len(ex.test) > 0
        assert not {e.chunk for e in ex.train} & {e.chunk for e in ex.test}
        train_spans = {(e.window, p) for e in ex.train for p in range(e.start, e.start + 8)}
        assert not train_spans & {(e.window, p) for e in ex.test for p in range(e.start, e.start + 8)}
        for e in ex.train + ex.test:  # activations are the store's, and the example activates
            assert np.allclose(e.activations, store.dense(latent, e.window)[e.start : e.start + 8], atol=1e-2)
            assert e.max_activation > 0 and len(e.tokens) == 8
        for e in ex.non_activating:
            assert max(e.activations) == 0 and store.dense(latent, e.window)[e.start : e.start + 8].max() == 0
        if center:
            for e in ex.train:
                assert 0 <= int(np.argmax(e.activations)) - 4 <= 0 or e.start in (0, store.ctx_len - 8)


def test_test_examples_are_quantile_stratified(planted):
    ws, tok, store, windows = _setup(planted)
    cfg = ExampleConfig(example_ctx_len=8, n_examples_train=5, n_examples_test=10, n_quantiles=5, min_examples=5,
                        center_examples=False, train_type="quantiles")
    ex = build_examples(store, windows, 0, cfg, NegativeSource(store, 8))
    assert {e.quantile for e in ex.test} == set(range(5))


def test_too_few_examples_is_a_reason(planted):
    ws, tok, store, windows = _setup(planted)
    out = build_examples(store, windows, RARE, ExampleConfig(min_examples=10), NegativeSource(store, 32))
    assert isinstance(out, str) and "3 activating examples < min_examples (10)" in out


def test_faiss_source_prefers_the_nearest_silent_chunks(planted):
    ws, tok, store, windows = _setup(planted)
    cfg = ExampleConfig(example_ctx_len=8, n_examples_train=5, n_examples_test=5, n_non_activating=4, min_examples=5)

    class Embed:  # one-hot on a hash of the text: 50 buckets
        name = "onehot"

        def embed(self, texts):
            out = np.zeros((len(texts), 50), np.float32)
            out[np.arange(len(texts)), [zlib.crc32(t.encode()) % 50 for t in texts]] = 1
            return out

    source = FaissSource(store, 8, windows, tok, ws.root / "emb", embedder=Embed())
    ex = build_examples(store, windows, 0, cfg, source)
    queries = source.vectors[[e.chunk for e in sorted(ex.train, key=lambda e: -e.max_activation)[:5]]]
    sims = (source.vectors[[e.chunk for e in ex.non_activating]] @ queries.T).max(1)
    assert ex.non_activating_source == "FAISS" and (sims == 1).all()  # a random draw: ~1e-4 chance
    assert (ws.root / "emb" / "onehot.safetensors").exists()  # embeddings cached on disk


def test_bad_example_config_names_the_field():
    with pytest.raises(ConfigError, match="n_examples_test"):
        ExampleConfig(n_examples_test=0)
    with pytest.raises(ConfigError, match="non_activating_source.*random, neighbours, FAISS"):
        ExampleConfig(non_activating_source="nearest")  # type: ignore[arg-type]


def test_drawn_examples_are_read_from_disk_one_latent_at_a_time(planted, tmp_path):
    """`draw_examples` keeps no latent's examples in memory: each is read back from its file when asked, equal
    to what `build_examples` drew (memory does not grow with the number of latents)."""
    from saelab.interp.config import InterpConfig
    from saelab.interp.examples import ExampleFiles
    from saelab.interp.run import draw_examples

    ws, tok, store, windows = _setup(planted)
    ex = ExampleConfig(example_ctx_len=8, n_examples_train=10, n_examples_test=12, n_non_activating=10,
                       min_examples=5)
    cfg = InterpConfig(examples=ex, max_latents=3)
    found, _ = draw_examples(cfg, store, windows, NegativeSource(store, 8), tmp_path)
    assert isinstance(found, ExampleFiles) and list(found) == [0, 1, 2] and len(found) == 3
    assert 1 in found and 99 not in found and vars(found).keys() == {"directory", "_latents", "_known"}
    for latent in found:
        assert found[latent] == build_examples(store, windows, latent, ex, NegativeSource(store, 8))
    with pytest.raises(KeyError):
        found[99]
