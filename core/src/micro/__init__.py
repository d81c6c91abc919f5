"""micro: a pluggable, asyncio-native microservice framework.

``import micro`` is cheap: building blocks are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors
from ._version import __version__
from .metadata import Metadata
from .plugins import create, get_manager

if TYPE_CHECKING:
    from .service import Service

__all__ = ["Metadata", "Service", "__version__", "create", "errors", "get_manager"]


def __getattr__(name: str) -> Any:
    # Service pulls in the server, client and every block interface: import it on first use only.
    if name == "Service":
        import importlib

        return importlib.import_module(".service", __name__).Service
    raise AttributeError(f"module 'micro' has no attribute {name!r}")
