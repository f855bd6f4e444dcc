"""One CLI dialect: kebab-case flags (delphi's snake_case kept as aliases), `--dtype auto` everywhere,
`--overwrite` to redo."""

from __future__ import annotations

import pytest
import typer.main

from saelab.cli import app


def _commands() -> dict:
    group = typer.main.get_group(app)
    found = {}
    for name, cmd in group.commands.items():
        for sub, c in getattr(cmd, "commands", {}).items():
            found[f"{name} {sub}"] = c
        if not hasattr(cmd, "commands"):
            found[name] = cmd
    return found


def _is_option(param) -> bool:
    return param.param_type_name == "option"  # typer's options are not click.Option (typer vendors click)


def _options(cmd) -> dict:
    """Every flag name (primary or alias, `--no-` forms too) → its option."""
    return {name: p for p in cmd.params if _is_option(p) for name in (*p.opts, *p.secondary_opts)}


def test_every_flag_is_named_in_kebab_case_first():
    for name, cmd in _commands().items():
        for p in cmd.params:
            if _is_option(p):
                first = next(o for o in p.opts if o.startswith("--"))
                assert "_" not in first, f"saelab {name}: {p.opts}"


DELPHI = ["--n_tokens", "--max_latents", "--explainer_model", "--explainer_provider", "--base_url", "--api_key_env",
          "--explainer_model_max_len", "--num_examples_per_scorer_prompt", "--n_intruder_examples", "--dataset_repo",
          "--dataset_split", "--dataset_column", "--batch_size", "--cache_ctx_len", "--min_examples",
          "--n_examples_train", "--train_type", "--n_examples_test", "--n_non_activating", "--example_ctx_len",
          "--center_examples", "--no-center_examples", "--non_activating_source", "--filter_bos", "--no-filter_bos",
          "--show_activations", "--results_dir"]


@pytest.mark.parametrize("command, aliases", [
    ("autointerp", DELPHI),
    ("cooc", ["--n_docs", "--n_tokens"]),
    ("sfal", ["--top_n", "--sae_features", "--target_l0", "--sae_type"]),
    ("diff", ["--quantization"]),
    ("train", ["--resume"]),
])
def test_the_seeds_spellings_are_aliases_of_the_kebab_flags(command, aliases):
    options = _options(_commands()[command])
    for alias in aliases:
        assert alias in options, alias
        kebab = alias.replace("_", "-")
        if kebab in options:
            assert options[kebab] is options[alias], alias


def test_dtype_defaults_to_auto_wherever_a_model_is_loaded():
    with_dtype = {name: _options(cmd)["--dtype"] for name, cmd in _commands().items() if "--dtype" in _options(cmd)}
    assert {"activations", "train", "cache", "eval", "compare", "autointerp", "demo", "diff"} <= set(with_dtype)
    assert {name: o.default for name, o in with_dtype.items() if o.default != "auto"} == {}


def test_redo_is_overwrite_and_resume_is_the_default():
    for name in ("tokens", "train", "cache", "compare", "match", "autointerp", "autointerp-merge", "finetune", "diff"):
        options = _options(_commands()[name])
        assert "--overwrite" in options and not options["--overwrite"].default, name
    assert _options(_commands()["train"])["--resume"].hidden  # accepted, no longer needed


def test_snake_case_aliases_parse_to_the_same_values(tmp_path, capsys):
    """An unknown explainer provider is refused by the config, whichever spelling carried it."""
    from saelab.cli import main

    for flag in ("--explainer-provider", "--explainer_provider"):
        with pytest.raises(SystemExit) as e:
            main(["autointerp", "tiny", "synth", "-w", str(tmp_path), flag, "vllm"])
        assert e.value.code == 2
        assert "explainer_provider: got 'vllm'" in " ".join(capsys.readouterr().err.split())
