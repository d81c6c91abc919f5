"""asyncmicro-grpc: serve micro handlers over gRPC and call gRPC servers from micro.

Select them with ``MICRO_SERVER=grpc`` and ``MICRO_CLIENT=grpc`` (or
``micro.create("server", "grpc")``). The classes are importable from here, but
importing this package (or its plugin hooks) does not import grpcio or protobuf:
each class is loaded when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import GRPCClient
    from .options import GRPCClientOptions, GRPCServerOptions
    from .proto import proto_of
    from .protorpc import ProtoRPCCodec
    from .server import GRPCServer
    from .status import from_status, to_status

__all__ = [
    "GRPCClient",
    "GRPCClientOptions",
    "GRPCServer",
    "GRPCServerOptions",
    "ProtoRPCCodec",
    "from_status",
    "proto_of",
    "to_status",
]

# Even the options wait: micro imports this package whenever it loads plugin hooks.
_LAZY = {
    "GRPCClient": ".client",
    "GRPCServer": ".server",
    "GRPCClientOptions": ".options",
    "GRPCServerOptions": ".options",
    "from_status": ".status",
    "to_status": ".status",
    "proto_of": ".proto",
    "ProtoRPCCodec": ".protorpc",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
