"""Assignment, coverage curve and baseline helpers against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from saelab.match import cosine_matrix, coverage_curve, hungarian, many_to_one, sinkhorn
from saelab.match.assignment import chance_level, random_rotation


def test_hungarian_is_the_best_injective_assignment():
    rng = np.random.default_rng(0)
    score = rng.random((4, 6)).astype(np.float32)
    best = max(sum(score[i, c] for i, c in enumerate(cols)) for cols in itertools.permutations(range(6), 4))
    pairs = hungarian(score)
    assert pairs.score.sum() == pytest.approx(best, rel=1e-6)
    assert len(set(pairs.b.tolist())) == 4


def test_sinkhorn_recovers_a_noisy_permutation():
    rng = np.random.default_rng(1)
    perm = rng.permutation(30)
    score = 0.3 * rng.random((30, 30)).astype(np.float32)
    score[np.arange(30), perm] += 0.6
    pairs = sinkhorn(score)
    np.testing.assert_array_equal(pairs.b[np.argsort(pairs.a)], perm)


def test_many_to_one_and_curve():
    score = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.3]], np.float32)
    best = many_to_one(score)
    np.testing.assert_array_equal(best.a_best, [0, 0, 1])
    np.testing.assert_array_equal(best.b_best, [0, 2])
    curve = {c["threshold"]: c["fraction"] for c in coverage_curve(np.array([0.9, 0.5, 0.2]), n_latents=4)}
    assert (curve[0.0], curve[0.5], curve[0.55], curve[0.95]) == (0.75, 0.5, 0.25, 0.0)


def test_rotation_is_orthogonal_and_destroys_matches():
    q = random_rotation(64, seed=0)
    np.testing.assert_allclose(q @ q.T, np.eye(64), atol=1e-5)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((50, 64)).astype(np.float32)
    assert hungarian(cosine_matrix(w, w)).score.min() == pytest.approx(1.0, abs=1e-5)
    null = hungarian(cosine_matrix(w, w @ q)).score
    assert chance_level(null) < 0.7


def test_cosine_matrix_blocks_equal_numpy():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((37, 16)), rng.standard_normal((11, 16))
    want = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    np.testing.assert_allclose(cosine_matrix(a, b, block=8), want, atol=1e-5)
