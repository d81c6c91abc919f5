"""Serving the gateway with uvicorn, its limits taken from :class:`~micro_api.options.APIOptions`."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable, Mapping
from typing import Any

from .gateway import Gateway
from .options import APIOptions, split_address

__all__ = ["application", "bind", "config", "serve"]


def application(gateway: Gateway) -> Any:
    """``gateway`` as served: wrapped in Starlette's CORS middleware when ``cors_origins`` is set."""
    origins = gateway.options.cors_origins
    if not origins:
        return gateway
    from starlette.middleware.cors import CORSMiddleware

    return CORSMiddleware(
        gateway,
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],  # any header may be call metadata
        max_age=600,
    )


def config(gateway: Gateway) -> Any:
    """The ``uvicorn.Config`` for ``gateway``: its limits, no access log, the lifespan starting the gateway.

    HTTP is the gateway's own protocol (:mod:`micro_api._protocol`: the unary hot path without ASGI, and
    the read, size and connection limits); uvicorn runs the server around it and the WebSockets.
    """
    import uvicorn

    from ._protocol import protocol_for

    options = gateway.options
    host, port = split_address(options.address)
    return uvicorn.Config(
        application(gateway),
        host=host,
        port=port,
        http=protocol_for(gateway),
        ws="websockets-sansio",  # not the legacy implementation websockets deprecates
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=False,  # X-Forwarded-* from a caller decide nothing here
        # max_connections, idle_timeout and read_timeout are kept by the HTTP protocol, which reads them from the
        # gateway's options; uvicorn's own settings for them say the same, for its WebSocket protocol.
        limit_concurrency=options.max_connections,
        timeout_keep_alive=max(1, round(options.idle_timeout)),
        ws_max_size=options.max_body_size,
        ws_ping_interval=options.ping_interval,
        ws_ping_timeout=options.ping_interval,
        timeout_graceful_shutdown=5,
    )


def bind(address: str) -> socket.socket:
    """A listening TCP socket on ``address`` (``host:port``; port 0 picks a free one)."""
    host, port = split_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    options: APIOptions,
    *,
    environ: Mapping[str, str] | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run ``micro api`` until SIGINT or SIGTERM: bind, call ``ready("host:port")``, serve.

    The event loop is uvloop when installed (uvicorn's ``loop="auto"``).
    """
    import uvicorn

    gateway = Gateway(options, environ=environ)
    server = uvicorn.Server(config(gateway))
    sock = bind(options.address)
    host, port = sock.getsockname()[:2]
    if ready is not None:
        ready(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    # uvicorn handles SIGINT/SIGTERM while it serves, then raises the signal again for the handler that
    # was there before: make that one a no-op, so a stop by signal is a clean exit (status 0).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
