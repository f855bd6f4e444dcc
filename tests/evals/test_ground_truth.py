"""Ground-truth metrics on synthetic data: agreement with SAELens's own `eval_sae_on_synthetic_data`
on fixtures it wrote (tests/fixtures/make_ground_truth_fixture.py), and properties without peers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from saelab.coders import CoderConfig, SparseCoder, load_dictionary
from saelab.errors import ConfigError
from saelab.evals.ground_truth import GroundTruthResult, ground_truth_metrics

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "saelens_ground_truth"


def _flat(d: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}/") if isinstance(v, dict) else {prefix + k: v})
    return out


def _fixture_samples() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(feature_vectors [F, d], hidden [N, d], feature_acts [N, F]) exactly as SAELens evaluated them."""
    feature_vectors = load_file(FIXTURES / "synthetic_model" / "synthetic_model.safetensors")["feature_vectors"]
    s = load_file(FIXTURES / "samples.safetensors")
    rows, cols = s["feature_acts_indices"].long()
    feature_acts = torch.zeros(s["hidden"].shape[0], feature_vectors.shape[0])
    feature_acts[rows, cols] = s["feature_acts_values"]
    return feature_vectors, s["hidden"], feature_acts


@pytest.mark.parametrize("name", ["topk", "batchtopk"])
def test_agrees_with_saelens_eval_sae_on_synthetic_data(name: str) -> None:
    saved = json.loads((FIXTURES / name / "saelens_eval.json").read_text())
    feature_vectors, hidden, feature_acts = _fixture_samples()
    coder = load_dictionary(FIXTURES / name)
    batch = saved["batch_size"]
    result = ground_truth_metrics(coder, feature_vectors, zip(hidden.split(batch), feature_acts.split(batch)))
    expected, got = _flat(saved["result"]), _flat(result.saelens_dict())
    assert set(got) == set(expected)
    # Same definitions throughout; the only differences are float rounding (saelab sums counts as
    # integers and ratios in float64, SAELens in float32), far below 1e-4.
    diffs = {k: abs(got[k] - expected[k]) for k in expected}
    assert max(diffs.values()) <= 1e-4, diffs
    assert result.n_samples == saved["num_samples"] == hidden.shape[0]
    # the fixture is neither trivial nor perfect
    assert 0.2 < result.mcc < 0.95 and 0 < result.classification.f1_score < 0.9


def test_detail_agrees_with_the_means_and_to_dict_is_json() -> None:
    feature_vectors, hidden, feature_acts = _fixture_samples()
    coder = load_dictionary(FIXTURES / "topk")
    r = ground_truth_metrics(coder, feature_vectors, [(hidden, feature_acts)], per_latent=True)
    assert r.detail is not None
    ratios = r.detail.latent_counts.ratios()
    assert float(ratios["f1_score"].mean()) == pytest.approx(r.classification.f1_score, abs=1e-12)
    assert float(r.detail.matched_cos.double().mean()) == pytest.approx(r.mcc, abs=1e-12)
    assert int((r.detail.matched_cos >= 0.9).sum()) == r.recovered_at_0_9 <= r.recovered_at_0_7
    assert r.detail.matched_feature.tolist() == sorted(set(r.detail.matched_feature.tolist()))
    counts = r.detail.latent_counts
    assert bool(((counts.tp + counts.fp + counts.fn + counts.tn) == r.n_samples).all())
    decoded = json.loads(json.dumps(r.to_dict()))
    assert decoded["saelab"]["detail"]["matched_counts"]["tp"] == r.detail.matched_counts.tp.tolist()
    assert decoded["mcc"] == r.mcc and "detail" not in ground_truth_metrics(
        coder, feature_vectors, [(hidden, feature_acts)]).to_dict()["saelab"]


# -- properties, no peer -------------------------------------------------------------------------
def _synthetic(n: int = 2000, n_features: int = 8, d: int = 16, seed: int = 0):
    """Orthonormal features [F, d], a bias [d], hidden [n, d] and non-negative sparse codes [n, F]."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    features = q.T[:n_features].contiguous()  # [F, d], orthonormal rows
    bias = torch.randn(d, generator=g) * 0.5
    fires = torch.rand(n, n_features, generator=g) < 0.2
    codes = fires * (0.5 + torch.rand(n, n_features, generator=g))  # [n, F]
    return features, bias, codes @ features + bias, codes


def _true_coder(features: torch.Tensor, bias: torch.Tensor, perm: torch.Tensor) -> SparseCoder:
    """A JumpReLU SAE whose decoder is the true dictionary (latents in the order `perm`): it encodes the true codes
    (active codes are >= 0.5; the threshold 0.1 removes the rounding error of the inactive ones)."""
    n_features, d = features.shape
    coder = SparseCoder(CoderConfig("jumprelu", d_in=d, d_sae=n_features))
    with torch.no_grad():
        coder.W_dec.copy_(features[perm])
        coder.W_enc.copy_(features[perm].T)  # orthonormal rows: (x - b) @ F.T are the codes
        coder.b_enc.zero_()
        coder.b_dec.copy_(bias)
        coder.threshold.fill_(0.1)
    return coder


def test_the_true_dictionary_scores_perfectly() -> None:
    features, bias, hidden, codes = _synthetic()
    coder = _true_coder(features, bias, perm=torch.randperm(features.shape[0], generator=torch.Generator()))
    r = ground_truth_metrics(coder, features, zip(hidden.split(300), codes.split(300)))
    assert r.mcc == pytest.approx(1.0, abs=1e-6) and r.uniqueness == 1.0
    assert r.classification.f1_score == pytest.approx(1.0) and r.classification.accuracy == pytest.approx(1.0)
    assert r.matched.f1_score == pytest.approx(1.0)
    assert r.explained_variance == pytest.approx(1.0, abs=1e-6) and r.shrinkage == pytest.approx(1.0, abs=1e-5)
    assert r.recovered_at_0_9 == r.n_features == 8 and r.dead_latents == 0
    assert r.sae_l0 == pytest.approx(r.true_l0) and r.n_samples == 2000


def test_a_random_decoder_scores_low_and_batching_does_not_matter() -> None:
    features, bias, hidden, codes = _synthetic(n_features=32, d=64)
    torch.manual_seed(0)
    coder = SparseCoder(CoderConfig("topk", d_in=64, d_sae=48, k=4))
    one = ground_truth_metrics(coder, features, [(hidden, codes)], per_latent=True)
    assert one.mcc < 0.5 and one.recovered_at_0_9 == 0
    many = ground_truth_metrics(coder, features, zip(hidden.split(97), codes.split(97)), per_latent=True)
    a, b = _flat(one.to_dict()), _flat(many.to_dict())
    assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=1e-9) for k in a)


def test_bad_input_raises_config_error() -> None:
    features, bias, hidden, codes = _synthetic()
    coder = _true_coder(features, bias, perm=torch.arange(8))
    with pytest.raises(ConfigError, match=r"feature_vectors: got shape \[8, 12\]; expected \[n_features, 16\]"):
        ground_truth_metrics(coder, features[:, :12], [(hidden, codes)])
    with pytest.raises(ConfigError, match="batches: got no samples"):
        ground_truth_metrics(coder, features, [])
    with pytest.raises(ConfigError, match="batches: got no samples"):
        ground_truth_metrics(coder, features, [(hidden[:0], codes[:0])])
    with pytest.raises(ConfigError, match=r"batches\[1\]: got hidden \[10, 16\] and feature_acts \[10, 7\]"):
        ground_truth_metrics(coder, features, [(hidden[:10], codes[:10]), (hidden[:10], codes[:10, :7])])
    with pytest.raises(ConfigError, match=r"batches\[0\]: got Tensor; expected a pair"):
        ground_truth_metrics(coder, features, [hidden])
    transcoder = SparseCoder(CoderConfig("relu", d_in=16, d_sae=8, kind="transcoder", d_out=12,
                                         apply_b_dec_to_input=False))
    with pytest.raises(ConfigError, match="coder: got a transcoder"):
        ground_truth_metrics(transcoder, features, [(hidden, codes)])


def test_result_is_frozen() -> None:
    features, bias, hidden, codes = _synthetic()
    r = ground_truth_metrics(_true_coder(features, bias, torch.arange(8)), features, [(hidden, codes)])
    assert isinstance(r, GroundTruthResult)
    with pytest.raises(AttributeError):
        r.mcc = 0.0  # type: ignore[misc]
