"""micro: a pluggable, asyncio-native microservice framework.

``import micro`` is cheap: building blocks are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors
from ._version import __version__
from .metadata import Metadata

if TYPE_CHECKING:
    from .interfaces import create
    from .plugins import get_manager
    from .service import Service

__all__ = ["Metadata", "Service", "__version__", "create", "errors", "get_manager"]

# Imported on first use: Service pulls in the server, client and every block interface, and the plugin
# manager importlib.metadata and packaging (~100 ms together, against ~20 ms for the rest of `import micro`).
_LAZY = {"Service": ".service", "create": ".interfaces", "get_manager": ".plugins"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'micro' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
