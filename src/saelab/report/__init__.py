"""The report: a static HTML site of a workspace's artifacts (index, dictionary, latent, matching,
SFAL pages), written with jinja2 (autoescape on) and a small shipped JS; works from file://."""

from .config import ReportConfig
from .model_view import ModelView
from .run import run

__all__ = ["ModelView", "ReportConfig", "run"]
