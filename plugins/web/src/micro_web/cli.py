"""``micro web``: serve the dashboard on loopback and print its address, token included."""

from __future__ import annotations

import click

__all__ = ["command"]


@click.command("web")
@click.option("--address", help="host:port to listen on (MICRO_WEB_ADDRESS; default 127.0.0.1:8082, 0 for any port).")
def command(address: str | None) -> None:
    """Serve a dashboard of the services in the registry: endpoints, calls, logs, stats and traces."""
    # Imported here: `micro --help` loads this module, and must stay light (core/tests/cli/test_help.py).
    import asyncio
    import logging
    import os
    import secrets
    import signal

    from aiohttp import web
    from micro.cli._service import signed_client
    from micro.errors import MicroError
    from micro.plugins import create
    from micro.registry.base import Registry
    from micro.transport._ratelog import PeerErrorLogger, RateLimitedLog

    from .app import make_app

    class _Closing(asyncio.Protocol):
        """A connection past ``max_connections``: closed as it is accepted."""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transport.close()

    from .options import web_options

    try:
        options = web_options(os.environ, address=address)
    except MicroError as exc:
        raise click.ClickException(str(exc)) from None
    token = options.token or secrets.token_urlsafe(24)

    async def main() -> None:
        registry = create("registry", cls=Registry)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # The calls made from the page are the user's own, as `micro call`'s are: they prove the local user
        # (so the user's Debug endpoints answer) and, for services that enforce an auth, carry MICRO_TOKEN or
        # a token of MICRO_AUTH_ID/MICRO_AUTH_SECRET's account.
        async with registry, signed_client(os.environ.get("MICRO_TOKEN")) as client:
            app = make_app(registry=registry, client=client, debug_client=client, options=options, token=token)
            # shutdown_timeout: an open page polls; on SIGINT its requests get 2 s to finish, not aiohttp's 60.
            runner = web.AppRunner(
                app,
                keepalive_timeout=options.idle_timeout,
                access_log=None,
                shutdown_timeout=2.0,
                # A request aiohttp cannot parse is a rate-limited line, not an ERROR with a traceback each.
                logger=PeerErrorLogger(RateLimitedLog(logging.getLogger("micro.web")), "micro web"),
            )
            await runner.setup()
            server = runner.server
            assert server is not None

            arriving = 0

            def arrived() -> None:
                nonlocal arriving
                arriving -= 1

            def connection() -> asyncio.BaseProtocol:
                # aiohttp keeps no limit of connections: one past max_connections is closed as it is accepted.
                # It counts a connection in connection_made, a loop turn later: those on their way count too, or
                # a batch of accepts overshoots the limit.
                nonlocal arriving
                if len(server.connections) + arriving < options.max_connections:
                    arriving += 1
                    loop.call_soon(arrived)  # runs just before the connection's connection_made
                    return server()
                return _Closing()

            host, _, port = options.address.rpartition(":")
            listener = await loop.create_server(connection, host.strip("[]") or None, int(port), backlog=128)
            bound = listener.sockets[0].getsockname()
            shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
            click.echo(f"micro web: http://{shown}:{bound[1]}/#token={token}", err=False)
            try:
                await stop.wait()
            finally:
                listener.close()
                await runner.cleanup()

    try:
        asyncio.run(main())
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {options.address}: {exc.strerror or exc}") from None
