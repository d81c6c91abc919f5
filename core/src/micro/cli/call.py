"""``micro call <service> <Endpoint.method> '<json>'``: call a service and print the JSON response."""

from __future__ import annotations

from typing import Any

import click

from ._service import dump, parse_json, parse_metadata, run

__all__ = ["command"]


@click.command("call")
@click.argument("service")
@click.argument("endpoint")
@click.argument("request", default="{}", required=False)
@click.option("-t", "--timeout", type=float, default=None, help="Seconds the call may take (default: the client's).")
@click.option("-m", "--metadata", "pairs", multiple=True, metavar="KEY=VALUE", help="Add a metadata header.")
@click.option("-a", "--address", default=None, help="Call this host:port instead of looking the service up.")
@click.option("-s", "--stream", is_flag=True, help="Server-streaming endpoint: print each response as one JSON line.")
@click.option("--compact", is_flag=True, help="Print JSON on one line.")
def command(
    service: str,
    endpoint: str,
    request: str,
    timeout: float | None,
    pairs: tuple[str, ...],
    address: str | None,
    stream: bool,
    compact: bool,
) -> None:
    """Call ENDPOINT (Class.method) of SERVICE with REQUEST (JSON, default {}).

    Prints the response as JSON. On error prints the error as JSON
    ({"id", "code", "detail", "status"}) on stderr and exits with status 1.

    \b
    micro call greeter Say.hello '{"name": "Alice"}'
    micro call --stream greeter Say.count '{"to": 3}'
    """
    body = parse_json(request, "REQUEST")
    metadata = parse_metadata(pairs)

    async def main() -> None:
        from ..auth.local import local_proof
        from ..client.base import Client
        from ..plugins import create

        client = create("client", cls=Client)
        # The user's own command: prove the local user, so the user's Debug endpoints and local_only
        # services answer it (the proof is one-use, bound to the endpoint, and carries no secret).
        client.wrap(local_proof())
        try:
            if stream:
                async with await client.stream(
                    service, endpoint, body, metadata=metadata, address=address, timeout=timeout
                ) as responses:
                    await responses.close_send()
                    async for item in responses:
                        click.echo(dump(item, pretty=False))
            else:
                result: Any = await client.call(
                    service, endpoint, body, metadata=metadata, address=address, timeout=timeout
                )
                click.echo(dump(result, pretty=not compact))
        finally:
            await client.close()

    # The client enforces the call's own deadline; this bound only guards start-up and shutdown.
    # A stream may legitimately run for as long as the server keeps sending.
    run(main, timeout=None if stream else (timeout or 30.0) + 30.0)
