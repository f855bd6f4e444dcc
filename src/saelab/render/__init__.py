"""The low-level rendering toolkit every stage shares: jinja2 environments (HTML with autoescape,
Markdown with escaping), the `Site` page writer, the templates and static files, and one matplotlib
set-up (`saelab.render.plots`, imported on use: matplotlib is slow to import).

Imports only saelab's core (`_io`, `errors`), jinja2, markupsafe and matplotlib.
"""

from .environment import (
                          STATIC,
                          STYLESHEET,
                          TEMPLATES,
                          environment,
                          format_number,
                          markdown_environment,
                          md_escape,
                          metric,
                          pct,
                          share,
                          stylesheet,
)
from .site import Site

__all__ = ["STATIC", "STYLESHEET", "Site", "TEMPLATES", "environment", "format_number", "markdown_environment",
           "md_escape", "metric", "pct", "share", "stylesheet"]
