"""``micro network``: run a network node, and show the network as one node sees it.

``micro network run`` starts a node from the ``MICRO_NETWORK_*`` variables (its
registry, transport and broker from ``MICRO_REGISTRY`` and the rest, as a
service's) and serves until SIGINT/SIGTERM. ``nodes``, ``routes``,
``services`` and ``graph`` ask a running node, at its proxy address
(``--address``, else ``MICRO_PROXY`` when it is ``host:port``, else the
``micro.network`` node in the registry).
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import click

from ._service import dump, run

__all__ = ["command"]

_ADDRESS_HELP = "The node's proxy address (default: MICRO_PROXY if host:port, else the registry's micro.network)."


@click.group("network", invoke_without_command=True)
@click.pass_context
def command(ctx: click.Context) -> None:
    """Run a network node, or show its nodes, routes, services and graph.

    Without a sub-command it runs a node, as Go Micro's `micro network` did (`micro network run`).
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(run_command)


@command.command("run")
@click.option("--address", help="Where the node's tunnel accepts peers (MICRO_NETWORK_ADDRESS).")
@click.option("--nodes", help="Peers to join, host:port,... (MICRO_NETWORK_NODES).")
@click.option("--proxy-address", help="Where local clients call through the node (MICRO_NETWORK_PROXY_ADDRESS).")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="What the node logs on stderr.",
)
def run_command(address: str | None, nodes: str | None, proxy_address: str | None, log_level: str) -> None:
    """Run a network node until interrupted; prints READY with its id and addresses once it has joined."""
    values: dict[str, Any] = {}
    if address:
        values["address"] = address
    if nodes:
        values["nodes"] = tuple(n.strip() for n in nodes.split(",") if n.strip())
    if proxy_address:
        values["proxy_address"] = proxy_address

    import logging

    # A node is a daemon: it says what it links, learns and withdraws.
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        from ..network.base import Network
        from ..plugins import create

        network = create("network", cls=Network, **values)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await network.connect()
        try:
            click.echo(f"READY node={network.id} tunnel={network.address} proxy={network.proxy_address}", err=False)
            await stop.wait()
        finally:
            await network.close()

    run(main, timeout=None)


async def _ask(address: str | None, endpoint: str, request: dict[str, Any]) -> Any:
    from ..client.rpc import RPCClient
    from ..network.mucp import SERVICE

    if address is None:
        proxy = os.environ.get("MICRO_PROXY", "").strip()
        address = proxy if ":" in proxy else await _registered()
    client = RPCClient()
    try:
        return (await client.invoke(SERVICE, endpoint, request, address=address, retries=0)).body
    finally:
        await client.close()


async def _registered() -> str:
    from ..errors import ServiceNotFound
    from ..network.mucp import SERVICE
    from ..plugins import create
    from ..registry.base import Registry

    registry = create("registry", cls=Registry)
    try:
        for service in await registry.get_service(SERVICE):
            for node in service.nodes:
                return node.address
    finally:
        await registry.close()
    raise ServiceNotFound(f"no {SERVICE} node in the registry: pass --address", id="micro.cli")


def _address_option(f: Any) -> Any:
    return click.option("--address", help=_ADDRESS_HELP)(f)


def _json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def _table(columns: list[str], rows: list[list[str]]) -> None:
    from ._text import table, terminal_width

    click.echo(table(columns, rows, width=terminal_width(), keep=columns[:1]))


@command.command("nodes")
@_address_option
@_json_option
def nodes_command(address: str | None, as_json: bool) -> None:
    """The node and the peers it hears from."""
    result = run(lambda: _ask(address, "Network.Nodes", {}), timeout=30.0)
    if as_json:
        click.echo(dump(result))
        return
    me = result["node"]
    rows = [[me["id"], me["address"], "this node", me.get("proxy", "")]]
    rows += [[n["id"], n["address"], "peer", ""] for n in result["nodes"]]
    _table(["id", "tunnel", "", "proxy"], rows)


@command.command("routes")
@_address_option
@click.option("--service", help="Only the routes of this service.")
@_json_option
def routes_command(address: str | None, service: str | None, as_json: bool) -> None:
    """The best route to every service node, as this node knows it (metric = hops)."""
    result = run(lambda: _ask(address, "Network.Routes", {"service": service} if service else {}), timeout=30.0)
    routes = result["routes"]
    if as_json:
        click.echo(dump(routes))
        return
    rows = [
        [
            r["service"],
            r["version"],
            r["address"],
            r["node"],
            r["gateway"] or "local",
            str(r["metric"]),
            f"{r['delay'] * 1000:.2f}ms",
        ]
        for r in routes
    ]
    _table(["service", "version", "address", "node", "gateway", "metric", "delay"], rows)


@command.command("services")
@_address_option
@_json_option
def services_command(address: str | None, as_json: bool) -> None:
    """The services reachable from the node."""
    result = run(lambda: _ask(address, "Network.Services", {}), timeout=30.0)
    if as_json:
        click.echo(dump(result["services"]))
        return
    for name in result["services"]:
        click.echo(name)


@command.command("graph")
@_address_option
@_json_option
def graph_command(address: str | None, as_json: bool) -> None:
    """Every node the node knows of, with its peers, as a tree from the node."""
    result = run(lambda: _ask(address, "Network.Graph", {}), timeout=30.0)
    if as_json:
        click.echo(dump(result))
        return
    graph: dict[str, Any] = result["graph"]
    seen: set[str] = set()

    def show(node: str, depth: int) -> None:
        seen.add(node)
        click.echo("  " * depth + node)
        for peer in graph.get(node, {}).get("peers", []):
            if peer not in seen and graph.get(peer, {}).get("hops", 0) > graph[node]["hops"]:
                show(peer, depth + 1)

    show(result["node"], 0)
    for node in sorted(set(graph) - seen):
        click.echo(f"{node} (not reached from {result['node']})")
