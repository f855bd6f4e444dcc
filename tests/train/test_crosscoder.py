"""The crosscoder trainer on synthetic paired activations with planted shared / base-only /
target-only directions."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from saelab.coders import SparseCoder
from saelab.diff.latent_stats import delta_norm, tag_latents
from saelab.errors import ArtifactError, ConfigError, FormatError
from saelab.train import CrosscoderConfig, train_crosscoder

D_IN = 32
PLANTED = ("shared",) * 4 + ("base-only",) * 4 + ("target-only",) * 4
TARGET_SCALE = 3.0  # the target model's activations are 3x larger: tags must not shift


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


@dataclass
class Paired:
    x: torch.Tensor
    """[n, 2, D_IN] raw paired activations"""
    directions: torch.Tensor
    """[n_concepts, 2, D_IN] planted decoder of each concept in each model (0 where absent)"""

    def batches(self, size: int = 500):
        return lambda: (self.x[i : i + size] for i in range(0, len(self.x), size))


def make_paired(n: int = 20_000, seed: int = 0) -> Paired:
    g = torch.Generator().manual_seed(seed)
    n_concepts = len(PLANTED)
    dirs = torch.linalg.qr(torch.randn(D_IN, D_IN, generator=g))[0][:, :n_concepts].T  # [c, d] orthonormal
    planted = torch.zeros(n_concepts, 2, D_IN)
    for i, tag in enumerate(PLANTED):
        if tag != "target-only":
            planted[i, 0] = dirs[i]
        if tag != "base-only":
            planted[i, 1] = dirs[i] * TARGET_SCALE
    fires = torch.rand(n, n_concepts, generator=g) < 0.17  # ~2 concepts per token: k = 2
    coef = fires * (0.5 + torch.rand(n, n_concepts, generator=g) * 1.5)  # [n, c]
    x = torch.einsum("nc,csd->nsd", coef, planted)
    x += 0.02 * torch.randn(x.shape, generator=g) * torch.tensor([1.0, TARGET_SCALE])[None, :, None]
    x += torch.tensor([0.3, -0.5])[None, :, None]  # a mean offset per model
    return Paired(x, planted)


@pytest.fixture(scope="module")
def paired() -> Paired:
    return make_paired()


CONFIG = CrosscoderConfig(d_sae=32, k=2, n_tokens=100_000, batch_size=500, lr=1e-2, dead_tokens=5_000,
                          checkpoint_every=0, seed=1)  # tied halves (the default); seed 0 splits one concept (cos 0.65)


@pytest.fixture(scope="module")
def trained(paired, tmp_path_factory) -> tuple[SparseCoder, object]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cc")
    return train_crosscoder(paired.batches(), CONFIG, d_in=D_IN, hookpoint="layers.3", out_dir=out, progress=False), out


def _best_match(coder: SparseCoder, planted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each planted concept: (index, cosine) of the learned latent whose concatenated
    (scale-normalised) decoder rows point the most in its direction."""
    scales = torch.tensor(coder.cfg.extra["activation_scales"])
    learned = (coder.W_dec.detach().float() / scales[None, :, None]).flatten(1)  # [d_sae, 2d]
    truth = (planted / torch.tensor([1.0, TARGET_SCALE])[None, :, None]).flatten(1)  # [c, 2d]
    cos = torch.nn.functional.normalize(truth, dim=-1) @ torch.nn.functional.normalize(learned, dim=-1).T
    best = cos.max(-1)
    return best.indices, best.values


def test_training_recovers_planted_directions_and_their_tags(trained, paired):
    coder, _ = trained
    index, cosine = _best_match(coder, paired.directions)
    assert cosine.min() > 0.95, cosine
    tags = tag_latents(delta_norm(coder))
    assert list(tags[index.numpy()]) == list(PLANTED)
    fvu = coder.cfg.extra["training"]["fvu"]
    assert fvu["base"] < 0.15 and fvu["target"] < 0.15, fvu


def test_independent_decoder_halves_recover_the_planted_tags_too(paired):
    from dataclasses import replace

    torch.set_num_threads(1)
    coder = train_crosscoder(paired.batches(), replace(CONFIG, seed=0, decoder_init="independent"), d_in=D_IN,
                             hookpoint="layers.3", progress=False)
    index, cosine = _best_match(coder, paired.directions)
    assert cosine.min() > 0.95 and list(tag_latents(delta_norm(coder))[index.numpy()]) == list(PLANTED)


def test_tied_halves_start_equal():
    from saelab.coders import CoderConfig
    from saelab.train.crosscoder import SOURCES, CrosscoderTrainer

    cfg = CoderConfig(architecture="batchtopk", d_in=D_IN, d_sae=32, k=2, kind="crosscoder", n_sources=2,
                      sources=SOURCES, hookpoint="layers.3")
    tied = CrosscoderTrainer(CONFIG, cfg, torch.device("cpu")).coder
    assert torch.equal(tied.W_dec[:, 0], tied.W_dec[:, 1]) and torch.equal(tied.W_enc[0], tied.W_enc[1])
    from dataclasses import replace

    free = CrosscoderTrainer(replace(CONFIG, decoder_init="independent"), cfg, torch.device("cpu")).coder
    assert not torch.equal(free.W_dec[:, 0], free.W_dec[:, 1])
    with pytest.raises(ConfigError, match="decoder_init"):
        replace(CONFIG, decoder_init="shared")


def test_saved_coder_encodes_like_training_selects(trained, paired):
    coder, out = trained
    loaded = SparseCoder.load(out)
    x = paired.x[:2000]
    z = loaded.encode(x)
    assert torch.equal(z, coder.encode(x))
    l0 = float((z > 0).sum(-1).float().mean())
    assert CONFIG.k * 0.5 < l0 < CONFIG.k * 2, l0  # the learned threshold keeps ~k latents per token
    x_hat = loaded.decode(z)  # raw units: FVU per model on the same tokens is small
    fvu = (x - x_hat).pow(2).sum((0, 2)) / (x - x.mean(0)).pow(2).sum((0, 2))
    assert fvu.max() < 0.25, fvu
    # the selection score folded in: Σ_m ‖d_j^m‖ / s_m = 1 for every latent
    scales = torch.tensor(loaded.cfg.extra["activation_scales"])
    assert torch.allclose((loaded.W_dec.norm(dim=-1) / scales).sum(-1), torch.ones(CONFIG.d_sae), atol=1e-4)
    assert loaded.cfg.extra["training"]["tokens"] == CONFIG.n_tokens
    assert loaded.cfg.extra["training"]["tokens_per_s"] > 0


def test_resume_after_interruption_gives_identical_weights(paired, tmp_path):
    config = CrosscoderConfig(d_sae=16, k=2, n_tokens=20 * 250, batch_size=250, lr=1e-2, dead_tokens=1000,
                              checkpoint_every=6, n_shared=2)
    full = train_crosscoder(paired.batches(), config, d_in=D_IN, hookpoint="h", progress=False)

    def crashing():
        for i, x in enumerate(paired.batches(250)()):
            if i == 14:  # mid-run, after the checkpoint of step 12
                raise KeyboardInterrupt
            yield x

    with pytest.raises(KeyboardInterrupt):
        train_crosscoder(crashing, config, d_in=D_IN, hookpoint="h", out_dir=tmp_path, progress=False)
    resumed = train_crosscoder(paired.batches(), config, d_in=D_IN, hookpoint="h", out_dir=tmp_path, progress=False)
    for name, tensor in full.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    # shared latents: one decoder for both models (equal after the per-model scales)
    scales = torch.tensor(resumed.cfg.extra["activation_scales"])
    w = resumed.W_dec.detach() / scales[None, :, None]
    assert torch.allclose(w[:2, 0], w[:2, 1], atol=1e-6)
    assert torch.allclose(delta_norm(resumed)[:2], torch.full((2,), 0.5), atol=1e-6)
    # a finished run is returned as is
    again = train_crosscoder(lambda: iter(()), config, d_in=D_IN, hookpoint="h", out_dir=tmp_path, progress=False)
    assert torch.equal(again.W_dec, resumed.W_dec)
    # another config in the same directory: refused, unless resume=False
    other = CrosscoderConfig(**{**config.to_dict(), "k": 3})
    with pytest.raises(ArtifactError, match="resume=False"):
        train_crosscoder(paired.batches(), other, d_in=D_IN, hookpoint="h", out_dir=tmp_path, progress=False)
    fresh = train_crosscoder(paired.batches(), other, d_in=D_IN, hookpoint="h", out_dir=tmp_path, resume=False,
                             progress=False)
    assert SparseCoder.load(tmp_path).cfg.k == 3 and fresh.cfg.extra["crosscoder"]["k"] == 3


@pytest.mark.parametrize("field, value, words", [
    ("k", 0, "positive integer"), ("k", 64, "k ≤ d_sae"), ("n_shared", 32, "n_shared < d_sae"),
    ("lr", -1.0, "positive rate"), ("dtype", "int8", "float32"), ("n_tokens", 10, "at least one batch"),
    ("auxk_alpha", -0.1, "≥ 0"),
])
def test_bad_config_values_name_the_field(field, value, words):
    kwargs = {**dict(d_sae=32, k=4, n_tokens=1000, batch_size=100), field: value}
    with pytest.raises(ConfigError) as err:
        CrosscoderConfig(**kwargs)
    message = str(err.value)
    assert f"CrosscoderConfig.{field}" in message and repr(value) in message and words in message


def test_batches_of_the_wrong_shape_are_refused(paired):
    config = CrosscoderConfig(d_sae=8, k=2, n_tokens=1000, batch_size=100)
    with pytest.raises(FormatError, match=r"\[N, 2, 32\]"):
        train_crosscoder([paired.x[:200, 0]], config, d_in=D_IN, hookpoint="h", progress=False)
