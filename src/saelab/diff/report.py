"""The diff report (Markdown and HTML): sentences made from the measurements, plots, tables, examples.

Everything shown is read from the run's artifacts (`cfg.json`, `activations/sweep/`,
`features/layer_LL/`, `visualizations/`), so a report can be rebuilt without the models. The
templates, stylesheet and environments are the shared ones of `saelab.render` (the workspace
report shows the same body on its diff page). Corpus text, prompts and explanations are
untrusted strings: the HTML environment escapes every value (autoescape), the Markdown one
escapes every value through `md_escape` (HTML specials become entities, Markdown specials get
a backslash), so neither a `<script>` in the corpus nor a `|` in an explanation can change the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from markupsafe import Markup

from .._io import read_json, versions, write_cfg, write_text
from ..errors import ConfigError, choices_message
from ..render import environment, markdown_environment, md_escape, stylesheet
from .load import layer_dir, read_run_config
from .sentences import layer_sentences, limits, overview_sentences, tail_table

ReportFormat = Literal["markdown", "html", "both"]
REPORT_FORMATS = ("markdown", "html", "both")

__all__ = ["REPORT_FORMATS", "ReportFormat", "generate_report", "report_context"]


def _md_tokens(example: dict[str, Any]) -> Markup:
    """Example pieces with firing runs inside «», each piece Markdown-escaped (Markup: `finalize` leaves it)."""
    out, inside = [], False
    for piece, a in zip(example["pieces"], example["activations"]):
        if a > 0 and not inside:
            out.append("«")
        elif a <= 0 and inside:
            out.append("»")
        out.append(md_escape(piece))
        inside = a > 0
    return Markup("".join(out) + ("»" if inside else ""))


def _tokens(example: dict[str, Any]) -> list[dict[str, Any]]:
    """Pieces as the shared `example` macro shows them: firing ones shaded by activation / the example's max."""
    acts = example["activations"]
    top = max(acts, default=0.0) or 1.0
    peak = max(range(len(acts)), key=lambda i: acts[i]) if acts else -1
    return [{"text": piece, "act": a, "alpha": round(0.15 + 0.85 * a / top, 2) if a > 0 else 0.0, "peak": i == peak}
            for i, (piece, a) in enumerate(zip(example["pieces"], acts))]


def report_context(output_dir: str | Path) -> dict[str, Any]:
    """Everything the templates show, read from the run's artifacts (no plots: see `generate_report`).

    Returns {"run": cfg.json, "sweep": sweep.json or None, "layers": [one view per crosscoder layer:
    layer, table, named, named_rows, scaling_rows, examples, tails, sentences], "overview": [sentence],
    "limits": [sentence]}.

    Example:
        >>> ctx = report_context("diff-run")
        >>> ctx["overview"][0]       # 'Base smollm2-135m vs target … compared on 70,000 tokens: …'
    """
    out = Path(output_dir)
    run = read_run_config(out)
    sweep_path = out / "activations" / "sweep" / "sweep.json"
    sweep = read_json(sweep_path) if sweep_path.exists() else None
    layers = []
    for layer in run["layers"]:
        d = layer_dir(out, layer)
        table = read_json(d / "latent_table.json")
        named_path = d / "naming" / "named.json"
        named = read_json(named_path) if named_path.exists() else None
        examples = read_json(d / "examples.json") if (d / "examples.json").exists() else {}
        layers.append(_layer_view(layer, table, named, examples))
    ctx = {"run": run, "sweep": sweep, "layers": layers}
    ctx["overview"] = overview_sentences(run, sweep, layers)
    ctx["limits"] = limits(run, sweep, layers)
    return ctx


def _layer_view(layer: int, table: dict[str, Any], named: dict[str, Any] | None,
                examples: dict[str, Any]) -> dict[str, Any]:
    rows = {r["latent"]: r for r in table["latents"]}
    named_rows = []
    for n in (named or {}).get("latents", []):
        row = rows.get(n["latent"], {})
        shown = [{**e, "tokens": _tokens(e)} for e in examples.get(str(n["latent"]), [])]
        named_rows.append({**row, **n, "examples": shown})
    flagged = [r for r in table["latents"] if r.get("nu_eps") is not None]
    view = {"layer": layer, "table": table, "named": named, "named_rows": named_rows, "scaling_rows": flagged,
            "examples": examples, "tails": tail_table(table)}
    view["sentences"] = layer_sentences(view)
    return view


def generate_report(output_dir: str | Path, report_format: ReportFormat = "both") -> list[Path]:
    """Write `reports/report.md` and/or `reports/report.html` (and cfg.json); return the files written.

    The plots are the run's `visualizations/*.png` (`plots.create_visualizations`), linked, not copied.

    Example:
        >>> generate_report("diff-run", "both")
        [PosixPath('diff-run/reports/report.md'), PosixPath('diff-run/reports/report.html')]
    """
    if report_format not in REPORT_FORMATS:
        raise ConfigError(choices_message("report_format", report_format, REPORT_FORMATS))
    out = Path(output_dir) / "reports"
    ctx = report_context(output_dir)
    # our own file names (not corpus text): Markup so the Markdown escaping leaves the paths alone
    plots = {p.stem: Markup(f"../visualizations/{p.name}")
             for p in sorted((Path(output_dir) / "visualizations").glob("*.png"))}
    written = []
    if report_format in ("markdown", "both"):
        env = markdown_environment()
        env.filters["tokens"] = _md_tokens
        write_text(out / "report.md", env.get_template("diff_report.md.jinja").render(**ctx, plots=plots))
        written.append(out / "report.md")
    if report_format in ("html", "both"):
        html = environment().get_template("diff_report.html.jinja").render(**ctx, plots=plots, latent_links={},
                                                                           css=stylesheet())
        write_text(out / "report.html", html)
        written.append(out / "report.html")
    write_cfg(out, {"artifact": "diff_report", "format": report_format, "files": [p.name for p in written],
                    "layers": ctx["run"]["layers"], "versions": versions()})
    return written
