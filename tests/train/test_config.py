"""Train configs: validation names the field; rates, groups and hookpoints are derived as documented."""

from __future__ import annotations

import pytest

from saelab.errors import ConfigError
from saelab.train import DictionarySpec, TrainConfig, default_lr

from .fixtures import spec


@pytest.mark.parametrize("kw,field", [
    ({"d_sae": 0}, "d_sae"), ({"k": 0}, "k"), ({"k": 200}, "k"), ({"architecture": "l1"}, "architecture"),
    ({"skip": True}, "skip"), ({"group_sizes": (64, 64)}, "group_sizes"), ({"name": "a/b"}, "name"),
    ({"architecture": "matryoshka", "group_sizes": (64, 32)}, "group_sizes"), ({"lr": -1.0}, "lr"),
])
def test_dictionary_spec_errors_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        spec(**kw)


@pytest.mark.parametrize("kw,field", [
    ({"batch_size": 0}, "batch_size"), ({"shuffle_windows": 12, "batch_size": 8}, "shuffle_windows"),
    ({"lr": 0.0}, "lr"), ({"b_dec_init": "median"}, "b_dec_init"), ({"threshold_beta": 1.0}, "threshold_beta"),
    ({"lr_decay_fraction": 2.0}, "lr_decay_fraction"), ({"auxk_alpha": -1.0}, "auxk_alpha"),
])
def test_train_config_errors_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        TrainConfig((spec(),), **kw)


def test_names_must_be_distinct():
    with pytest.raises(ConfigError, match="distinct"):
        TrainConfig((spec(), spec()))


def test_learning_rates_follow_sparsify_and_can_be_set_per_dictionary():
    assert default_lr(2**14) == pytest.approx(2e-4) and default_lr(4096) == pytest.approx(4e-4)
    wide, swept = spec(name="w", d_sae=16384), spec(name="s", lr=1e-3)
    assert TrainConfig((wide, swept)).lr_for(wide) == pytest.approx(2e-4)
    assert TrainConfig((wide, swept), lr=5e-4).lr_for(wide) == 5e-4
    assert TrainConfig((wide, swept), lr=5e-4).lr_for(swept) == 1e-3


def test_matryoshka_default_groups_cover_every_latent():
    groups = DictionarySpec("m", "x", d_sae=4096, k=32, architecture="matryoshka").groups()
    assert groups == (128, 256, 512, 1024, 2176) and sum(groups) == 4096


def test_hookpoints_lists_inputs_and_targets_once():
    cfg = TrainConfig((spec(name="a"), spec(name="b", out_hookpoint="y"), spec(name="c", hookpoint="y")))
    assert cfg.hookpoints == ["x", "y"]
