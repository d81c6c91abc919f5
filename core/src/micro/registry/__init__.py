"""Service discovery: the :class:`Registry` interface, its value types and options.

Implementations are selected by name (``MICRO_REGISTRY=local|memory|mdns``) and
built with ``micro.create("registry")``; they are not imported here.
"""

from __future__ import annotations

from .base import Action, Endpoint, Node, Registry, Result, Service, Value, Watcher
from .options import LocalRegistryOptions, MDNSRegistryOptions, RegistryOptions

__all__ = [
    "Action",
    "Endpoint",
    "LocalRegistryOptions",
    "MDNSRegistryOptions",
    "Node",
    "Registry",
    "RegistryOptions",
    "Result",
    "Service",
    "Value",
    "Watcher",
]
