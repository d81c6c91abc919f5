"""micro web: a dashboard of a micro deployment in the browser (``micro web``).

Nothing is imported with the package (``micro --help`` loads the command module, and must stay light):
``make_app`` and ``WebOptions`` load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import make_app
    from .options import WebOptions

__all__ = ["WebOptions", "make_app"]


def __getattr__(name: str) -> Any:
    if name == "make_app":
        from .app import make_app

        return make_app
    if name == "WebOptions":
        from .options import WebOptions

        return WebOptions
    raise AttributeError(f"module 'micro_web' has no attribute {name!r}")
