"""A small service for the end-to-end test: RPC, a subscriber, and the store, all through the selected plugins.

    python e2e_guestbook.py <service name> <topic> <store table>

``Book.sign`` stores a signature and returns how many there are; the
subscriber on ``<topic>`` stores the events it gets; ``Book.signatures``
lists both. Everything goes through ``micro.create``, so ``MICRO_REGISTRY``,
``MICRO_BROKER`` and ``MICRO_STORE`` decide which servers are used. It prints
``READY <address>`` once registered and exits 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field

import micro
from micro.store import Record, Store


@dataclass
class Signature:
    name: str


@dataclass
class Count:
    signatures: int


@dataclass
class Signatures:
    signed: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    store: str = ""


class Book:
    def __init__(self, store: Store, table: str) -> None:
        self._store = store
        self._table = table

    async def sign(self, req: Signature) -> Count:
        await self._store.write(Record(f"signed:{req.name}", req.name.encode()), table=self._table)
        return Count(signatures=len(await self._store.list(table=self._table, prefix="signed:")))

    async def signatures(self) -> Signatures:
        signed = [r.value.decode() for r in await self._store.read("signed:", table=self._table, prefix=True)]
        events = [r.value.decode() for r in await self._store.read("event:", table=self._table, prefix=True)]
        return Signatures(signed=signed, events=events, store=type(self._store).__name__)


class Events:
    def __init__(self, store: Store, table: str) -> None:
        self._store = store
        self._table = table

    async def signed(self, event: Signature) -> None:
        await self._store.write(Record(f"event:{event.name}", event.name.encode()), table=self._table)


async def main(name: str, topic: str, table: str) -> None:
    store: Store = micro.create("store")
    await store.start()
    service = micro.Service(name, register_ttl=10.0, register_interval=2.0)
    service.handle(Book(store, table))
    service.subscribe(topic, Events(store, table))

    async def announce() -> None:
        print(f"READY {service.server.address}", flush=True)

    service.hook("after_start", announce)
    try:
        await service.run()
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
