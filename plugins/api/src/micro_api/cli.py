"""``micro api``: the HTTP gateway, or (``--openapi``) the OpenAPI document of every registered service."""

from __future__ import annotations

import os
import sys

import click

__all__ = ["command"]


@click.command("api")
@click.option("-a", "--address", default=None, help="host:port to listen on (MICRO_API_ADDRESS, 127.0.0.1:8080).")
@click.option("--openapi", "print_openapi", is_flag=True, help="Print the OpenAPI 3.1 document and exit.")
def command(address: str | None, print_openapi: bool) -> None:
    """Serve every registered service over HTTP: POST /<service>/<Handler>/<method> with a JSON body.

    Server streams answer as Server-Sent Events; every stream also over a WebSocket at the same
    path. GET /health for probes, GET /openapi.json for the OpenAPI document. Settings are
    MICRO_API_* variables (see docs/api.md); MICRO_REGISTRY etc. choose how services are found.

    \b
    micro api                              # http://127.0.0.1:8080
    curl -d '{"name": "Alice"}' http://127.0.0.1:8080/greeter/Say/hello
    micro api --openapi > openapi.json
    """
    from micro.cli._service import dump, fail, run
    from micro.errors import MicroError

    from .options import api_options

    try:
        options = api_options(os.environ, address=address)
    except MicroError as exc:
        fail(exc)
    if print_openapi:
        from .gateway import Gateway

        async def main() -> object:
            gateway = Gateway(options)
            await gateway.start()
            try:
                return await gateway.openapi()
            finally:
                await gateway.close()

        click.echo(dump(run(main, timeout=30.0)))
        return
    from .server import serve

    def ready(where: str) -> None:
        click.echo(f"micro api serving on http://{where}", err=True)
        sys.stderr.flush()

    try:
        serve(options, ready=ready)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {options.address}: {exc}") from None
