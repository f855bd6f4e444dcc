"""The jinja2 environments of every page and report saelab writes, and their filters.

Two environments over one template folder:
- `environment()`: HTML, autoescape on for every template whatever its name, so a corpus
  string or an LLM's explanation is text, never markup.
- `markdown_environment()`: Markdown reports; every value goes through `md_escape` (HTML
  specials as entities, Markdown specials backslashed) unless it is `Markup`, which here means
  "already Markdown-escaped" (our own file names, pieces escaped one by one).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

PACKAGE_DIR = Path(__file__).parent
TEMPLATES = PACKAGE_DIR / "templates"
STATIC = PACKAGE_DIR / "static"
STYLESHEET = STATIC / "report.css"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # what can start markup, a link, or end a table cell


def format_number(x: Any, digits: int = 3) -> str:
    """A number for a report cell: – for missing/non-finite, thousands separators, small floats in g.

    Example:
        >>> format_number(12345), format_number(0.5), format_number(2e-5), format_number(None)
        ('12,345', '0.500', '2e-05', '–')
    """
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:,.{digits}f}"
    return str(x)


def pct(x: Any, digits: int = 3) -> str:
    """A value already in percent, `digits` significant digits: 12.5 → '12.5%'."""
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}g}%"


def share(x: Any, digits: int = 1) -> str:
    """A fraction as a percentage with `digits` decimals: 0.125 → '12.5%'."""
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:.{digits}f}%"


def metric(x: Any, fmt: str) -> str:
    """A value through a format string of the artifact that made it ('{:.3f}'), – when missing."""
    return "–" if x is None else fmt.format(x)


def md_escape(value: Any) -> str:
    """A value as inert Markdown text: HTML specials as entities, Markdown specials backslashed, one line
    (`a|b <i>` becomes `a\\|b &lt;i&gt;`; a newline becomes ⏎)."""
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\r", " ").replace("\n", " ⏎ ")


def _finalize_markdown(value: Any) -> Any:
    return value if isinstance(value, Markup) else md_escape(value)


def _with_filters(env: jinja2.Environment) -> jinja2.Environment:
    env.filters.update(num=format_number, pct=pct, share=share, metric=metric)
    return env


def environment() -> jinja2.Environment:
    """HTML templates of the package; autoescape is on for every template whatever its name.

    Example:
        >>> environment().from_string("{{ x }}").render(x="<b>")
        '&lt;b&gt;'
    """
    return _with_filters(jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True))


def markdown_environment() -> jinja2.Environment:
    """Markdown templates of the package: every value `md_escape`d unless it is `Markup` (already escaped)."""
    return _with_filters(jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=False, finalize=_finalize_markdown,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True))


def stylesheet() -> Markup:
    """The one stylesheet (static/report.css), to inline into a standalone page. Our own file: Markup so
    autoescape leaves its quotes alone (inside <style> an entity is not decoded)."""
    return Markup(STYLESHEET.read_text(encoding="utf-8"))
