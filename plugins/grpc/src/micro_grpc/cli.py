"""``micro proto <service>``: print the ``.proto`` describing a registered service's typed endpoints.

It reads the endpoint descriptions from the registry (what ``micro describe`` shows), so it works for any
running micro service; generate a client in any language from its output with ``protoc``. Endpoints
whose types have no proto3 form are listed as comments (see :mod:`micro_grpc.proto`).
"""

from __future__ import annotations

import click

__all__ = ["command"]

_CLIENT_STREAMS = {"client_stream", "bidi_stream"}
_SERVER_STREAMS = {"server_stream", "bidi_stream"}


@click.command("proto")
@click.argument("service")
def command(service: str) -> None:
    """Print the .proto of SERVICE's typed endpoints (from the registry), for protoc in any language."""
    from micro.cli._service import run
    from micro.plugins import create
    from micro.registry.base import Endpoint, Registry

    from .proto import proto_of

    async def main() -> list[Endpoint]:
        registry = create("registry", cls=Registry)
        try:
            entries = await registry.get_service(service)
        finally:
            await registry.close()
        found: dict[str, Endpoint] = {}
        for entry in entries:  # newest version last wins: one description per endpoint
            for endpoint in entry.endpoints:
                found[endpoint.name] = endpoint
        return list(found.values())

    endpoints = run(main, timeout=30.0)
    described = [
        (
            endpoint,
            endpoint.metadata.get("stream_kind") in _CLIENT_STREAMS,
            endpoint.metadata.get("stream_kind") in _SERVER_STREAMS,
        )
        for endpoint in sorted(endpoints, key=lambda e: e.name)
        if "subscriber" not in endpoint.metadata
    ]
    click.echo(proto_of(service, described), nl=False)
