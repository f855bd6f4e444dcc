"""The diff report (Markdown and HTML): sentences made from the measurements, plots, tables, examples.

Everything shown is read from the run's artifacts (`activations/sweep/`, `features/layer_LL/`,
`visualizations/`), so a report can be rebuilt without the models. Corpus text, prompts and
explanations are untrusted strings: the HTML template escapes every value (jinja2
autoescape), and the Markdown environment escapes every value through `finalize`
(HTML specials become entities, Markdown specials get a backslash), so neither a
`<script>` in the corpus nor a `|` in an explanation can change the page.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import jinja2
from markupsafe import Markup, escape

from .._io import read_json, versions, write_cfg, write_text
from ..report.render import format_number
from .sentences import layer_sentences, limits, overview_sentences, tail_table

ReportFormat = Literal["markdown", "html", "both"]
REPORT_FORMATS = ("markdown", "html", "both")
TEMPLATES = Path(__file__).parent / "templates"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # what can start markup, a link, or end a table cell


def md_escape(value: Any) -> str:
    """A value as inert Markdown text: HTML specials as entities, Markdown specials backslashed, one line."""
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\r", " ").replace("\n", " ⏎ ")


def _pct(x: Any, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:.{digits}f}%"


def _html_tokens(example: dict[str, Any]) -> Markup:
    """Example pieces as spans shaded by activation (each piece escaped)."""
    top = max(example["activations"]) or 1.0
    parts = []
    for piece, a in zip(example["pieces"], example["activations"]):
        if a > 0:
            parts.append(Markup('<span class="t on" style="--a:{:.2f}" title="{:.3g}">{}</span>').format(
                0.15 + 0.85 * a / top, a, piece))
        else:
            parts.append(escape(piece))
    return Markup("").join(parts)


def _md_tokens(example: dict[str, Any]) -> Markup:
    """Example pieces with firing runs inside «», escaped for Markdown (marked safe for `finalize`)."""
    out, inside = [], False
    for piece, a in zip(example["pieces"], example["activations"]):
        if a > 0 and not inside:
            out.append("«")
        elif a <= 0 and inside:
            out.append("»")
        out.append(md_escape(piece))
        inside = a > 0
    return Markup("".join(out) + ("»" if inside else ""))


def _environment(markdown: bool) -> jinja2.Environment:
    common = dict(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                  trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    if markdown:
        env = jinja2.Environment(autoescape=False, finalize=lambda v: v if isinstance(v, Markup) else md_escape(v),
                                 **common)
        env.filters["tokens"] = _md_tokens
    else:
        env = jinja2.Environment(autoescape=True, **common)
        env.filters["tokens"] = _html_tokens
    env.filters["num"] = format_number
    env.filters["pct"] = _pct
    return env


def report_context(output_dir: str | Path) -> dict[str, Any]:
    """Everything the templates show, read from the run's artifacts."""
    out = Path(output_dir)
    run = read_json(out / "run_config.json")
    sweep_path = out / "activations" / "sweep" / "sweep.json"
    sweep = read_json(sweep_path) if sweep_path.exists() else None
    layers = []
    for layer in run["layers"]:
        d = out / "features" / f"layer_{layer:02d}"
        table = read_json(d / "latent_table.json")
        named_path = d / "naming" / "named.json"
        named = read_json(named_path) if named_path.exists() else None
        examples = read_json(d / "examples.json") if (d / "examples.json").exists() else {}
        layers.append(_layer_view(layer, table, named, examples))
    # our own file names (not corpus text): marked safe so the Markdown escaping leaves the paths alone
    plots = {p.stem: Markup(f"../visualizations/{p.name}") for p in sorted((out / "visualizations").glob("*.png"))}
    ctx = {"run": run, "sweep": sweep, "layers": layers, "plots": plots}
    ctx["overview"] = overview_sentences(run, sweep, layers)
    ctx["limits"] = limits(run, sweep, layers)
    return ctx


def _layer_view(layer: int, table: dict[str, Any], named: dict[str, Any] | None,
                examples: dict[str, Any]) -> dict[str, Any]:
    rows = {r["latent"]: r for r in table["latents"]}
    named_rows = []
    for n in (named or {}).get("latents", []):
        row = rows.get(n["latent"], {})
        named_rows.append({**row, **n, "examples": examples.get(str(n["latent"]), [])})
    flagged = [r for r in table["latents"] if r.get("nu_eps") is not None]
    view = {"layer": layer, "table": table, "named": named, "named_rows": named_rows, "scaling_rows": flagged,
            "examples": examples, "tails": tail_table(table)}
    view["sentences"] = layer_sentences(view)
    return view


def generate_report(output_dir: str | Path, report_format: ReportFormat = "both") -> list[Path]:
    """Write `reports/report.md` and/or `reports/report.html` (and cfg.json); return the files written.

    Example:
        >>> generate_report("diff-run", "both")
        [PosixPath('diff-run/reports/report.md'), PosixPath('diff-run/reports/report.html')]
    """
    from ..errors import ConfigError

    if report_format not in REPORT_FORMATS:
        raise ConfigError(f"report_format: got {report_format!r}; expected one of: {', '.join(REPORT_FORMATS)}.")
    out = Path(output_dir) / "reports"
    ctx = report_context(output_dir)
    written = []
    if report_format in ("markdown", "both"):
        write_text(out / "report.md", _environment(True).get_template("report.md.jinja").render(**ctx))
        written.append(out / "report.md")
    if report_format in ("html", "both"):
        css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
        write_text(out / "report.html", _environment(False).get_template("report.html.jinja").render(**ctx, css=css))
        written.append(out / "report.html")
    write_cfg(out, {"artifact": "diff_report", "format": report_format, "files": [p.name for p in written],
                    "layers": ctx["run"]["layers"], "versions": versions()})
    return written
