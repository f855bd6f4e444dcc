"""Read explanations back from an interp run: the one reader later stages (match, SFAL, the report) use.

An interp run lives in `workspace/interp/RUN/` (RUN defaults to the dictionary's name, `--name`
chooses another) and writes `explanations/<explainer>/<latent>.json`; `run_config.json` names the
dictionary it explained and the explainer it was asked for (see `saelab.interp.run`).
"""

from __future__ import annotations

from pathlib import Path

from .._io import read_json
from ..errors import ArtifactError
from ..workspace import Workspace
from .explainers.base import Explainer
from .explainers.top_tokens import TOP_TOKENS


def _config(run_dir: Path) -> dict:
    path = run_dir / "run_config.json"
    return read_json(path) if path.exists() else {}


def run_dictionary(run_dir: Path) -> str | None:
    """The dictionary a run explained, as its run_config.json names it (None when it names none)."""
    return _config(run_dir).get("dictionary")


def interp_runs(workspace: Workspace, dictionary: str) -> list[Path]:
    """The interp runs of `dictionary`, preferred first: `interp/DICTIONARY/` (the default name), then
    the runs whose run_config.json names the dictionary, newest first."""
    runs = [p for p in sorted((workspace.root / "interp").glob("*")) if (p / "explanations").is_dir()]
    default = workspace.root / "interp" / dictionary
    named = [p for p in runs if p != default and run_dictionary(p) == dictionary]
    named.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return ([default] if default in runs else []) + named


def find_run(workspace: Workspace | None, dictionary: str | None, run: str | Path | None = None) -> Path | None:
    """The run directory: `run` as a name under `workspace/interp/` or a path; else the preferred run of
    `dictionary` (None when it has none). A named run that does not exist is an error."""
    if run is not None:
        for candidate in ([workspace.root / "interp" / str(run)] if workspace is not None else []) + [Path(run)]:
            if (candidate / "explanations").is_dir():
                return candidate
        where = f" or {workspace.root / 'interp' / str(run)}" if workspace is not None else ""
        raise ArtifactError(f"run: no interp run at {run}{where} (no explanations/ folder); run "
                            "`saelab autointerp` first or give the run's --name / directory.")
    if workspace is None or dictionary is None:
        raise ArtifactError("find_run: give a workspace and a dictionary, or a run directory.")
    runs = interp_runs(workspace, dictionary)
    return runs[0] if runs else None


def run_explainer(run_dir: Path, explainer: str | None = None) -> str:
    """The explainer whose explanations to read: `explainer`, else the one the run was configured with,
    else its only LLM explainer folder, else top-tokens."""
    folders = sorted(p.name for p in (run_dir / "explanations").iterdir() if p.is_dir())
    if explainer is not None:
        if explainer not in folders:
            raise ArtifactError(f"explainer: got {explainer!r}; {run_dir} holds explanations by "
                                f"{', '.join(folders) or 'no explainer'}.")
        return explainer
    configured = (_config(run_dir).get("config") or {}).get("explainer")
    if configured in folders:
        return configured
    llm = [f for f in folders if f != TOP_TOKENS.name]
    return llm[0] if llm else TOP_TOKENS.name


def read_explanations(run_dir: Path, explainer: str) -> dict[int, str]:
    """{latent: text} of `run_dir/explanations/<explainer>/`; failed and empty explanations are left out."""
    out = {}
    for path in sorted((run_dir / "explanations" / explainer).glob("*.json")):
        rec = read_json(path)
        text = str(rec.get("explanation") or "").strip()
        if not rec.get("failed") and text:
            out[int(rec.get("latent", path.stem))] = text
    return out


def read_failures(run_dir: Path, explainer: str) -> dict[int, str]:
    """{latent: why} for the explanations of `run_dir/explanations/<explainer>/` that failed or are empty."""
    out = {}
    for path in sorted((run_dir / "explanations" / explainer).glob("*.json")):
        rec = read_json(path)
        if rec.get("failed") or not str(rec.get("explanation") or "").strip():
            out[int(rec.get("latent", path.stem))] = str(rec.get("reason") or "no explanation")
    return out


def scored_variant(explainer: str) -> str:
    """The variant (scores/<scorer>/<variant>/) a run scored `explainer`'s explanations as, when it was the
    run's explainer: `explanation`, or `top-tokens` for the baseline."""
    return TOP_TOKENS.variant if explainer == TOP_TOKENS.name else Explainer.variant


def read_summary(run_dir: Path) -> dict | None:
    """summary.json of a run (None before its first summary)."""
    path = run_dir / "summary.json"
    return read_json(path) if path.exists() else None


def read_per_latent(run_dir: Path, variant: str) -> dict[str, dict[int, dict]]:
    """{scorer: {latent: metrics}} of one variant, from per_latent.json ({} before the first summary)."""
    path = run_dir / "per_latent.json"
    per = read_json(path) if path.exists() else {}
    return {scorer: {int(l): m for l, m in by_variant.get(variant, {}).items()} for scorer, by_variant in per.items()}


def scorers_with_records(run_dir: Path, variant: str) -> list[str]:
    """The scorers that wrote per-example records of `variant` (scores/<scorer>/<variant>/)."""
    return sorted(p.name for p in (run_dir / "scores").glob("*") if (p / variant).is_dir())


def read_records(run_dir: Path, scorer: str, variant: str, latent: int) -> list[dict]:
    """The per-example records `scorer` wrote for `latent`'s `variant` ([] when it wrote none)."""
    path = run_dir / "scores" / scorer / variant / f"{latent}.json"
    return list(read_json(path).get("records", [])) if path.exists() else []


def load_explanations(workspace: Workspace | None, dictionary: str | None, run: str | Path | None = None,
                      explainer: str | None = None) -> dict[int, str]:
    """The explanations of a dictionary's latents written by `saelab autointerp` ({} when the dictionary
    has no interp run and none was named).

    Args:
        run: a run name under `workspace/interp/` or a run directory (default: `interp/DICTIONARY/`, else
            the newest run whose run_config.json names the dictionary).
        explainer: whose explanations (default: the run's explainer; `top-tokens` for the baseline).

    Example:
        >>> load_explanations(Workspace.at("ws"), "sae16k")[42]
        'the word "river" and other bodies of water'
    """
    run_dir = find_run(workspace, dictionary, run)
    if run_dir is None:
        return {}
    return read_explanations(run_dir, run_explainer(run_dir, explainer))
