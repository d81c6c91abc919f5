"""asyncmicro-api: ``micro api``, the HTTP gateway to micro services (ASGI, served by uvicorn).

``POST /<service>/<Handler>/<method>`` with a JSON body calls the endpoint and answers with its JSON;
streams come out as Server-Sent Events or over WebSockets; ``/openapi.json`` documents every
registered service. Importing this package imports neither Starlette nor uvicorn: each name is
loaded when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import status_of
    from .gateway import Gateway, metadata_of
    from .openapi import document
    from .options import APIOptions, api_options
    from .server import application, serve

__all__ = [
    "APIOptions",
    "Gateway",
    "api_options",
    "application",
    "document",
    "metadata_of",
    "serve",
    "status_of",
]

_LAZY = {
    "APIOptions": ".options",
    "api_options": ".options",
    "Gateway": ".gateway",
    "metadata_of": ".gateway",
    "document": ".openapi",
    "application": ".server",
    "serve": ".server",
    "status_of": ".errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
