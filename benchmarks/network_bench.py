"""Network: a call through a network node's proxy against the same call made directly.

Loopback only. A service runs in this process, registered in a ``local``
registry file that network node ``a`` reads; the nodes are processes of their
own (``micro network run``), as they are deployed. Clients in this process call
the service with the same concurrency:

* ``direct call``: the client dials the service's address (what a client on the
  service's machine does);
* ``through one proxy hop``: the client has ``MICRO_PROXY`` set to node ``a``'s
  proxy, which forwards the call to the service (the first hop of every
  network call);
* ``through two nodes (tunnel)``: the client's proxy is node ``b``, which has only
  a route learned from ``a`` and forwards over the (encrypted) tunnel to ``a``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from _harness import Context, Row, Worker, closed_loop

GROUP = "network"
CONCURRENCY = 32


class Echo:
    async def echo(self, req: dict[str, Any]) -> dict[str, Any]:
        return req


async def run(ctx: Context) -> list[Row]:
    import sys

    import micro
    from micro.broker.memory import MemoryBroker, MemoryBrokerOptions
    from micro.client import ClientOptions
    from micro.client.rpc import RPCClient
    from micro.network.mucp import SERVICE
    from micro.registry.local import LocalRegistry, LocalRegistryOptions
    from micro.transport.tcp import TCPTransport

    tag = uuid.uuid4().hex[:8]
    path_a, path_b = ctx.scratch / f"network-a-{tag}.db", ctx.scratch / f"network-b-{tag}.db"

    def node_env(id: str, path: Any, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in ctx.env.items() if not k.startswith("MICRO_")}
        env.update(
            MICRO_REGISTRY="local",
            MICRO_REGISTRY_PATH=str(path),
            MICRO_NETWORK_ID=id,
            MICRO_NETWORK_TOKEN=tag,
            MICRO_NETWORK_INTERVAL="1s",
            **extra,
        )
        return env

    registry = LocalRegistry(LocalRegistryOptions(path=str(path_a)))
    service = micro.Service(
        "bench-echo",
        registry=registry,
        broker=MemoryBroker(MemoryBrokerOptions(space=f"bench-{tag}")),
        transport=TCPTransport(),
        environ={},
        handle_signals=False,
    )
    service.handle(Echo())
    clients: list[RPCClient] = []
    workers: list[Worker] = []
    argv = [sys.executable, "-m", "micro", "network", "run", "--log-level", "warning"]
    try:
        await service.start()
        a = await Worker.start(argv, env=node_env("a", path_a), label="node a")
        workers.append(a)
        a_info = dict(part.split("=", 1) for part in a.address.split())
        b = await Worker.start(argv, env=node_env("b", path_b, MICRO_NETWORK_NODES=a_info["tunnel"]), label="node b")
        workers.append(b)
        b_info = dict(part.split("=", 1) for part in b.address.split())
        control = RPCClient()
        clients.append(control)
        deadline = time.monotonic() + 30
        while True:
            found = await control.invoke(SERVICE, "Network.Routes", {"service": "bench-echo"}, address=b_info["proxy"])
            if found.body["routes"]:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("node b never learned the route to bench-echo")
            await asyncio.sleep(0.1)
        address = service.server.address
        duration, warmup = ctx.pick((1.5, 0.5), (4.0, 1.0))
        rows: list[Row] = []
        for name, options, call_address in (
            ("direct call", ClientOptions(), address),
            ("through one proxy hop", ClientOptions(proxy=a_info["proxy"]), None),
            ("through two nodes (tunnel)", ClientOptions(proxy=b_info["proxy"]), None),
        ):
            client = RPCClient(options)
            clients.append(client)

            async def call(client: RPCClient = client, call_address: str | None = call_address) -> None:
                await client.invoke("bench-echo", "Echo.echo", {"n": 1}, address=call_address)

            await call()
            load = await closed_loop([call] * CONCURRENCY, duration=duration, warmup=warmup)
            ctx.log(f"  network {name}: {load.rate:,.0f} calls/s, p50 {load.p50_ms:.2f} ms")
            note = f"{CONCURRENCY} callers, p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms"
            rows.append(Row(GROUP, name, load.rate, note=note))
        return rows
    finally:
        for client in clients:
            await client.close()
        for worker in reversed(workers):
            await worker.stop()
        await service.stop()
