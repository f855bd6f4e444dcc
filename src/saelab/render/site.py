"""`Site`: writes the pages of a static site, each atomically, with a relative path back to its top."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .._io import write_text
from .environment import STATIC, environment


class Site:
    """Writes pages under `out`; every page gets `common` and `root`, the relative path back to the site's top.

    Example:
        >>> site = Site(Path("out"), {"workspace": "ws"})
        >>> site.copy_static()
        >>> site.page("index.html.jinja", "index.html", cards=[])   # out/index.html
    """

    def __init__(self, out: Path, common: dict[str, Any]) -> None:
        self.out = out
        self.env = environment()
        self.common = common
        self.pages: list[Path] = []

    def page(self, template: str, rel: str, **context: Any) -> Path:
        """Render `template` to `out/rel` (rel with forward slashes)."""
        depth = rel.count("/")
        html = self.env.get_template(template).render(**self.common, **context, root="../" * depth)
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, html)
        self.pages.append(path)
        return path

    def script_data(self, rel: str, variable: str, obj: Any) -> Path:
        """A JS file that sets `window.<variable>` (loaded by a <script> tag: fetch() of file:// is blocked)."""
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, f"window.{variable} = {text};\n")
        return path

    def copy_static(self) -> Path:
        """The shipped stylesheet and script into `out/static/`."""
        dst = self.out / "static"
        dst.mkdir(parents=True, exist_ok=True)
        for f in STATIC.iterdir():
            if f.is_file():
                shutil.copyfile(f, dst / f.name)
        return dst
