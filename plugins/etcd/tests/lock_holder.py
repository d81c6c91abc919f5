"""A process for test_sync: takes one lock with a ttl, then sleeps until killed.

Usage: ``python lock_holder.py <address> <root> <id> <ttl>``; prints ``locked`` once it holds it.
"""

from __future__ import annotations

import asyncio
import sys

from micro_etcd.options import EtcdSyncOptions
from micro_etcd.sync import EtcdSync


async def main(address: str, root: str, id: str, ttl: float) -> None:
    sync = EtcdSync(EtcdSyncOptions(address=(address,), root=root))
    await sync.start()
    await sync.lock(id, ttl=ttl, wait=10)
    print("locked", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
