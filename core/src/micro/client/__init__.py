"""The RPC client: calls, streams and publishes, with deadlines, retries and middleware.

The default implementation, ``mucp``, is :class:`micro.client.rpc.RPCClient`,
built with ``micro.create("client")``; it is not imported here.
"""

from __future__ import annotations

from .base import (
    NO_REQUEST,
    Backoff,
    CallFunc,
    CallOptions,
    CallWrapper,
    Client,
    Publication,
    PublishFunc,
    PublishWrapper,
    Request,
    Response,
    Stream,
    StreamOptions,
    exponential_backoff,
)
from .options import ClientOptions

__all__ = [
    "NO_REQUEST",
    "Backoff",
    "CallFunc",
    "CallOptions",
    "CallWrapper",
    "Client",
    "ClientOptions",
    "Publication",
    "PublishFunc",
    "PublishWrapper",
    "Request",
    "Response",
    "Stream",
    "StreamOptions",
    "exponential_backoff",
]
