"""The one matplotlib set-up of saelab: Agg backend (no display), SVG text kept as text, atomic saves.

Every stage draws with `fig, ax = figure(w, h)` and ends with `save(fig, path)`; the format is the
path's suffix (`.svg` for the report site, `.png` beside an artifact).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._io import atomic_path

DPI = 110
"""Resolution of raster plots (PNG)."""


def pyplot() -> Any:
    """`matplotlib.pyplot` on the Agg backend, with SVG text written as text (searchable, small)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"
    import matplotlib.pyplot as plt

    return plt


def figure(width: float = 5.5, height: float = 3.6, **subplots: Any) -> tuple[Any, Any]:
    """(figure, axes) of `width` × `height` inches; `subplots` go to `plt.subplots` (nrows, ncols, squeeze, …).

    Example:
        >>> fig, ax = figure(6.4, 3.6)
        >>> ax.plot([0, 1], [1, 0]); save(fig, Path("out/line.svg"))
    """
    return pyplot().subplots(figsize=(width, height), **subplots)


def save(fig: Any, path: str | Path, dpi: int = DPI) -> Path:
    """Lay out, write atomically in the format of `path`'s suffix, close the figure; return `path`."""
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    pyplot().close(fig)
    return path
