"""The CLI: help text, and user mistakes as one line with exit code 2 (never a traceback)."""

import subprocess
import sys

import pytest


def saelab(*args: str, env_ws: str | None = None):
    cmd = [sys.executable, "-c", "from saelab.cli import main; main()", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_help_lists_the_commands():
    r = saelab("--help")
    assert r.returncode == 0
    for cmd in ("demo", "models", "corpus", "tokens", "activations"):
        assert cmd in r.stdout


def test_every_command_prints_its_help(capsys):
    """Help texts are rich markup: a bracket such as "[/path]" in one would crash --help."""
    import typer.main

    from saelab.cli import app, main

    group = typer.main.get_group(app)
    commands = [[name] for name, c in group.commands.items() if not hasattr(c, "commands")]
    commands += [[name, sub] for name, c in group.commands.items() for sub in getattr(c, "commands", {})]
    assert len(commands) > 15
    for cmd in commands:
        with pytest.raises(SystemExit) as done:
            main([*cmd, "--help"])
        assert done.value.code in (0, None), cmd
        assert "Usage" in capsys.readouterr().out, cmd


@pytest.mark.parametrize("args,needle", [
    (("tokens", "--model", "no-such-model"), "model: got 'no-such-model'; expected one of: smollm2-135m"),
    (("corpus", "no-such-corpus"), "corpus: got 'no-such-corpus'; expected one of: mixed-en"),
    (("tokens", "--model", "/nonexistent/model.gguf"), "does not exist"),
])
def test_user_mistakes_are_one_line_with_exit_code_2(args, needle):
    r = saelab(*args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr.replace("\n", " ")
    assert "Traceback" not in r.stderr


@pytest.mark.integration
def test_bad_hookpoint_and_sizes_on_the_real_model(tmp_path):
    r = saelab("activations", "-w", str(tmp_path), "--n-tokens", "2048", "-H", "resid_post.99")
    assert r.returncode == 2 and "layers 0–29" in r.stderr and "Traceback" not in r.stderr
    r = saelab("tokens", "-w", str(tmp_path / "b"), "--n-tokens", "0")
    assert r.returncode == 2 and "n_tokens: got 0" in r.stderr
    r = saelab("tokens", "-w", str(tmp_path / "c"), "--ctx-len", "100000")
    assert r.returncode == 2 and "ctx_len: got 100000" in r.stderr


def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path, monkeypatch, capsys):
    """typer turns Ctrl-C into a silent exit 130; the user is told that a rerun resumes."""
    import saelab.demo
    from saelab.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(saelab.demo, "run_demo", interrupted)
    with pytest.raises(SystemExit) as e:
        main(["demo", "-w", str(tmp_path)])
    err = " ".join(capsys.readouterr().err.split())
    assert e.value.code == 130
    assert "interrupted: saved work is kept" in err and "resuming is the default" in err
    assert f"saelab demo -w {tmp_path}" in err  # the exact command that resumes
    assert "Traceback" not in err
