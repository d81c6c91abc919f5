"""The RPC server: handler classes as ``Class.method`` endpoints, broker subscribers, middleware.

The default implementation, ``mucp``, is :class:`micro.server.rpc.RPCServer`,
built with ``micro.create("server")``; it is not imported here.
"""

from __future__ import annotations

from .base import HandlerFunc, HandlerWrapper, Message, Request, Server, SubscriberFunc, SubscriberWrapper
from .handler import Kind, Method, Subscription, describe, methods_of, subscriptions_of
from .options import ServerOptions

__all__ = [
    "HandlerFunc",
    "HandlerWrapper",
    "Kind",
    "Message",
    "Method",
    "Request",
    "Server",
    "ServerOptions",
    "SubscriberFunc",
    "SubscriberWrapper",
    "Subscription",
    "describe",
    "methods_of",
    "subscriptions_of",
]
