"""micro: a pluggable, asyncio-native microservice framework.

``import micro`` is cheap: building blocks are imported when first used.
"""

from __future__ import annotations

from . import errors
from ._version import __version__
from .metadata import Metadata
from .plugins import create, get_manager

__all__ = ["Metadata", "__version__", "create", "errors", "get_manager"]
