"""Δnorm, tags, decoder cosine, latent scaling and firing per group on hand-set crosscoders."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch

from saelab.coders import CoderConfig, SparseCoder
from saelab.diff.latent_stats import (
    LatentTable,
    decoder_cosine,
    delta_norm,
    firing_frequency_by_group,
    latent_scaling,
    tag_latents,
)
from saelab.errors import ConfigError


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def relu_crosscoder(d_in: int, d_sae: int, scales: list[float] | None = None) -> SparseCoder:
    cfg = CoderConfig("relu", d_in=d_in, d_sae=d_sae, kind="crosscoder", n_sources=2, apply_b_dec_to_input=False,
                      extra={"activation_scales": scales} if scales else {})
    coder = SparseCoder(cfg)
    with torch.no_grad():
        for p in coder.parameters():
            p.zero_()
    return coder


E = torch.eye(8)


def test_delta_norm_and_tags_are_as_planted():
    coder = relu_crosscoder(8, 7)
    # (base norm, target norm) -> Δnorm
    planted = [(0.0, 2.0, 0.0, "target-only"), (3.0, 0.0, 1.0, "base-only"), (1.0, 1.0, 0.5, "shared"),
               (1.0, 0.5, 0.75, "other"), (1.0, 0.85, 0.575, "shared"), (0.1, 1.0, 0.05, "target-only"),
               (1.0, 0.7, 0.65, "other")]
    with torch.no_grad():
        for j, (nb, nt, _, _) in enumerate(planted):
            coder.W_dec[j, 0] = nb * E[j]
            coder.W_dec[j, 1] = nt * E[j]
    delta = delta_norm(coder)
    assert torch.allclose(delta, torch.tensor([p[2] for p in planted]), atol=1e-6)
    assert list(tag_latents(delta)) == [p[3] for p in planted]
    cos = decoder_cosine(coder)
    assert cos[0] == 0 and cos[1] == 0 and torch.allclose(cos[2:], torch.ones(5))


def test_activation_scales_are_divided_out_and_cosine_sees_direction():
    coder = relu_crosscoder(8, 2, scales=[1.0, 3.0])  # the target model's activations are 3x larger
    with torch.no_grad():
        coder.W_dec[0, 0], coder.W_dec[0, 1] = E[0], 3 * E[0]  # the same concept in both: shared
        coder.W_dec[1, 0], coder.W_dec[1, 1] = E[1], -E[1]  # flipped, and 3x smaller in target units
    assert torch.allclose(delta_norm(coder), torch.tensor([0.5, 5 / 6]), atol=1e-6)
    assert list(tag_latents(delta_norm(coder))) == ["shared", "other"]
    assert torch.allclose(decoder_cosine(coder), torch.tensor([1.0, -1.0]))


@pytest.mark.parametrize("kwargs", [dict(target_only=0.5), dict(base_only=0.55), dict(shared_band=0.45)])
def test_tag_thresholds_that_overlap_are_refused(kwargs):
    with pytest.raises(ConfigError, match="target_only"):
        tag_latents(np.array([0.5]), **kwargs)


class Planted(NamedTuple):
    coder: SparseCoder
    x: torch.Tensor  # [n, 2, 8]
    f: torch.Tensor  # [n, 4] planted activations of latents 0..3
    groups: np.ndarray  # [n]


@pytest.fixture(scope="module")
def planted() -> Planted:
    """Five latents over orthonormal e0..e7 (noise on e5..e7, which no latent reads):
    0  target-only, genuine: e0 only in the target model
    1  target-only decoder, but 0.7·f1·e1 is in the base activations too: complete shrinkage
    2  shared e2
    3  target-only decoder e3, while base-only latent 4 writes 0.8·f3·e3 into the base: latent decoupling
    """
    g = torch.Generator().manual_seed(0)
    n = 3000
    groups = np.arange(n) % 3
    f = (torch.rand(n, 4, generator=g) < 0.3) * (0.5 + 1.5 * torch.rand(n, 4, generator=g))
    f[:, 0] *= torch.from_numpy(groups == 1)  # latent 0 fires only on group 1
    noise = torch.randn(n, 2, 3, generator=g) * 0.3
    target = f @ E[:4] + noise[:, 1] @ E[5:]
    base = 0.7 * f[:, 1:2] * E[1] + f[:, 2:3] * E[2] + 0.8 * f[:, 3:4] * E[3] + noise[:, 0] @ E[5:]
    coder = relu_crosscoder(8, 5)
    with torch.no_grad():
        for j, model in ((0, 1), (1, 1), (2, 0), (3, 1)):
            coder.W_enc[model, :, j] = E[j]
        coder.W_enc[0, :, 4] = E[3]
        for j in range(4):
            coder.W_dec[j, 1] = E[j]
        coder.W_dec[2, 0] = E[2]
        coder.W_dec[4, 0] = E[3]
        coder.b_dec[:] = torch.tensor([0.5, -1.0])[:, None] * E[7]  # a bias along e7, outside every direction
    x = torch.stack([base, target], 1) + coder.b_dec.detach()
    return Planted(coder, x, f, groups)


def _batches(x: torch.Tensor, size: int = 700):
    return lambda: (x[i : i + size] for i in range(0, len(x), size))


def test_latent_scaling_flags_the_planted_artifacts(planted):
    ls = latent_scaling(planted.coder, _batches(planted.x), [0, 1, 3, 4])
    assert list(ls.own) == ["target", "target", "target", "base"]  # from Δnorm
    np.testing.assert_allclose(ls.beta_error[:3, 1], 1.0, atol=1e-5)  # own model: j's contribution put back
    np.testing.assert_allclose(ls.nu_error, [0.0, 0.7, 0.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(ls.nu_reconstruction, [0.0, 0.0, 0.8, 1.25], atol=1e-5)
    assert list(ls.verdict) == ["genuine", "complete shrinkage", "latent decoupling", "latent decoupling"]
    assert ls.n_tokens == len(planted.x) and (ls.n_fired == (planted.f[:, [0, 1, 3, 3]] > 0).sum(0).numpy()).all()


def test_latent_scaling_beta_is_the_least_squares_scale(planted):
    """Streamed β equals argmin_β Σ_t ‖β f_j(t) d − ε(t)‖² solved on all tokens at once."""
    coder, x = planted.coder, planted.x
    ls = latent_scaling(coder, _batches(x, 111), [1], own=["target"])
    z = coder.encode(x)
    eps_base = x[:, 0] - coder.decode(z)[:, 0] + z[:, 1:2] * coder.W_dec[1, 0]  # [n, 8]
    design = (z[:, 1:2] * coder.W_dec[1, 1]).reshape(-1, 1).double()  # f_j(t) d, flattened
    beta = torch.linalg.lstsq(design, eps_base.detach().reshape(-1, 1).double()).solution.item()
    assert ls.beta_error[0, 0] == pytest.approx(beta, rel=1e-5) and beta == pytest.approx(0.7, abs=1e-5)


def test_a_latent_that_never_fires_is_reported_as_such(planted):
    ls = latent_scaling(planted.coder, _batches(planted.x[:50] * 0), [0])
    assert ls.n_fired[0] == 0 and list(ls.verdict) == ["not fired"]


def test_firing_frequency_by_group(planted):
    class Meta(NamedTuple):
        acts: torch.Tensor
        group: np.ndarray

    meta = [Meta(planted.x[i : i + 500], planted.groups[i : i + 500]) for i in range(0, len(planted.x), 500)]
    firing = firing_frequency_by_group(planted.coder, meta, n_groups=4)
    assert list(firing.n_tokens) == [1000, 1000, 1000, 0]
    fired0 = (planted.f[:, 0] > 0).numpy()
    assert firing.frequency[0, 0] == 0 and firing.frequency[2, 0] == 0
    assert firing.frequency[1, 0] == pytest.approx(fired0[planted.groups == 1].mean())
    assert np.isnan(firing.frequency[3]).all()  # an empty group has no frequency
    tuples = [(m.acts, m.group) for m in meta]
    assert np.array_equal(firing_frequency_by_group(planted.coder, tuples, 4).frequency[:3], firing.frequency[:3])
    with pytest.raises(ConfigError, match="n_groups=2"):
        firing_frequency_by_group(planted.coder, tuples, 2)


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_latent_table_round_trips(planted, tmp_path, suffix):
    table = LatentTable.from_coder(planted.coder)
    table.add_scaling(latent_scaling(planted.coder, _batches(planted.x), [1, 3]))
    table.add("freq/chat", np.linspace(0, 1, 5))
    assert list(table.columns["tag"]) == ["target-only"] * 2 + ["shared"] + ["target-only", "base-only"]
    assert list(table.columns["verdict"]) == ["", "complete shrinkage", "", "latent decoupling", ""]
    table.save(tmp_path / f"latents{suffix}")
    loaded = LatentTable.load(tmp_path / f"latents{suffix}")
    assert set(loaded.columns) == set(table.columns) and len(loaded) == 5
    for name, values in table.columns.items():
        if values.dtype.kind == "f":
            np.testing.assert_allclose(loaded.columns[name], values, atol=1e-12)  # nan where not tested
        else:
            assert list(loaded.columns[name]) == list(values), name
    with pytest.raises(ConfigError, match="rows"):
        table.add("short", [1, 2])


def test_delta_norm_spread_states_quantiles_and_bands():
    from saelab.diff.latent_stats import delta_norm_spread

    delta = np.array([0.02, 0.05, 0.3, 0.45, 0.5, 0.5, 0.55, 0.6, 0.95])
    s = delta_norm_spread(torch.tensor(delta), threshold=0.1)
    assert s["n"] == 9 and s["median"] == 0.5 and s["min"] == 0.02 and s["max"] == 0.95
    assert (s["q25"], s["q75"]) == tuple(np.percentile(delta, [25, 75])) and s["iqr"] == s["q75"] - s["q25"]
    assert s["p05"] < s["q25"] < s["q75"] < s["p95"] and s["std"] == pytest.approx(delta.std())
    assert s["bands"] == {"target-only": 2, "base-only": 1, "shared": 5, "other": 1}
    empty = delta_norm_spread([], threshold=0.1)
    assert empty["n"] == 0 and empty["median"] is None and sum(empty["bands"].values()) == 0
