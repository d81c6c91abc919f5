"""``micro call <service> <Endpoint.method> '<json>'``: call a service and print the JSON response."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from typing import Any

import click

from ._service import dump, parse_json, parse_metadata, run, signed_client

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
@click.option(
    "--token",
    envvar="MICRO_TOKEN",
    default=None,
    help="Send this access token (`micro auth token`); default: MICRO_TOKEN, else MICRO_AUTH_ID/SECRET's.",
)
def command(
    service: str,
    endpoint: str,
    request: str,
    timeout: float | None,
    pairs: tuple[str, ...],
    address: str | None,
    stream: bool,
    compact: bool,
    token: str | None,
) -> None:
    """Call ENDPOINT (Class.method) of SERVICE with REQUEST (JSON, default {}).

    Prints the response as JSON. On error prints the error as JSON
    ({"id", "code", "detail", "status"}) on stderr and exits with status 1.

    With --stream and REQUEST "-", each line of stdin is one JSON request,
    sent as it is read (client-streaming and bidirectional endpoints); the
    stream is closed for sending at the end of stdin, and every response is
    printed as one JSON line as it arrives.

    \b
    micro call greeter Say.hello '{"name": "Alice"}'
    micro call --stream greeter Say.count '{"to": 3}'
    printf '{"n":1}\n{"n":2}\n' | micro call --stream greeter Say.sum -
    """
    from_stdin = request == "-"
    if from_stdin and not stream:
        raise click.BadParameter('"-" (requests from stdin) needs --stream', param_hint="REQUEST")
    body = None if from_stdin else parse_json(request, "REQUEST")
    metadata = parse_metadata(pairs)

    async def main() -> None:
        async with signed_client(token) as client:
            if stream and from_stdin:
                async with await client.stream(
                    service, endpoint, metadata=metadata, address=address, timeout=timeout
                ) as responses:
                    sender = asyncio.create_task(_send_stdin(responses))
                    try:
                        async for item in responses:
                            click.echo(dump(item, pretty=False))
                    finally:
                        sender.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await sender  # raises the bad-line error, if that is why the stream ended
            elif stream:
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

    # The client enforces the call's own deadline; this bound only guards start-up and shutdown.
    # A stream may legitimately run for as long as the server keeps sending.
    run(main, timeout=None if stream else (timeout or 30.0) + 30.0)


async def _send_stdin(responses: Any) -> None:
    """Send each line of stdin as one JSON request, then close the sending side.

    stdin is read by a daemon thread, so a stream the server ends while stdin is still open (a terminal)
    does not keep the process waiting for a line.
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue(maxsize=64)

    def read() -> None:
        try:
            for line in sys.stdin:
                asyncio.run_coroutine_threadsafe(lines.put(line), loop).result()
            asyncio.run_coroutine_threadsafe(lines.put(""), loop).result()
        except RuntimeError:  # the loop has finished: nobody wants the rest
            return

    threading.Thread(target=read, name="micro-call-stdin", daemon=True).start()
    number = 0
    while line := await lines.get():
        number += 1
        if not line.strip():
            continue
        try:
            message = parse_json(line, f"stdin line {number}")
        except click.BadParameter:
            await responses.close()
            raise
        await responses.send(message)
    await responses.close_send()
