"""Matching recovers a wide dictionary built from a narrow one (decoders only, no model)."""

from __future__ import annotations

import pytest

from saelab.match import MatchConfig, cosine_matrix, find_families, hungarian
from saelab.match.analysis import _classes
from saelab.match.assignment import many_to_one

from .synthetic import build


@pytest.fixture(scope="module")
def truth():
    return build(d=96, n_same=20, n_split=10, n_unique=8, n_novel=30, seed=3)


def test_families_are_the_split_latents(truth):
    cos = cosine_matrix(truth.narrow, truth.wide)
    fams = find_families(truth.narrow, truth.wide, cos)
    assert {f.parent: sorted(f.members) for f in fams} == truth.families
    for f in fams:
        assert f.recon_cosine == pytest.approx(1.0, abs=1e-3)
        assert f.best_single_cosine < 0.7


def test_empty_family_search_is_an_empty_list(truth):
    same_only = truth.narrow[:20]
    assert find_families(same_only, same_only, cosine_matrix(same_only, same_only)) == []
    assert find_families(truth.narrow, truth.wide[:1], cosine_matrix(truth.narrow, truth.wide[:1])) == []


def test_every_latent_gets_its_true_class(truth):
    cos = cosine_matrix(truth.narrow, truth.wide)
    pairs, best = hungarian(cos), many_to_one(cos)
    fams = find_families(truth.narrow, truth.wide, cos)
    cn, cw = _classes(pairs, best, fams, "a", *cos.shape, threshold=0.7, novel=MatchConfig().novel_threshold)
    assert {i for i in range(cn.size) if cn[i] == "matched"} == set(truth.same)
    assert {i for i in range(cn.size) if cn[i] == "family parent"} == set(truth.families)
    assert [i for i in range(cn.size) if cn[i] == "unique"] == truth.unique
    assert {j for j in range(cw.size) if cw[j] == "identical"} == set(truth.same.values())
    assert sorted(j for j in range(cw.size) if cw[j] == "split child") == sorted(sum(truth.families.values(), []))
    assert sorted(j for j in range(cw.size) if cw[j] == "novel") == truth.novel
    # the one-to-one assignment pairs each identical latent with its copy
    assert all(pairs.b[pairs.a == i][0] == j for i, j in truth.same.items())
