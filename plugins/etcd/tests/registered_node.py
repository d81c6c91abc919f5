"""A server stand-in for test_registry: registers one node with a ttl and re-registers it until killed.

Usage: ``python registered_node.py <address> <prefix> <name> <ttl>``; prints ``registered`` once it is.
"""

from __future__ import annotations

import asyncio
import sys

from micro.registry import Node, Service
from micro_etcd.options import EtcdRegistryOptions
from micro_etcd.registry import EtcdRegistry


async def main(address: str, prefix: str, name: str, ttl: float) -> None:
    registry = EtcdRegistry(EtcdRegistryOptions(address=(address,), prefix=prefix))
    service = Service(name, "1.0.0", nodes=[Node("victim", "127.0.0.1:20999")])
    await registry.register(service, ttl=ttl)
    print("registered", flush=True)
    while True:  # what a server's re-register loop does, every third of the ttl
        await asyncio.sleep(ttl / 3)
        await registry.register(service, ttl=ttl)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
