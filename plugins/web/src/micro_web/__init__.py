"""micro web: a dashboard of a micro deployment in the browser (``micro web``)."""

from __future__ import annotations

from .app import make_app
from .options import WebOptions

__all__ = ["WebOptions", "make_app"]
