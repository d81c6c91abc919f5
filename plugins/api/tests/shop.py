"""The service the tests call through the gateway, and how a test starts the gateway in this process."""

import asyncio
import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from micro import context
from micro.errors import Conflict, Forbidden, NotFound
from micro_api import APIOptions, Gateway
from micro_api.server import bind, config


@dataclass
class Item:
    name: str
    price: float = 0.0
    tags: list[str] = field(default_factory=list)


@dataclass
class Order:
    items: list[Item]
    note: str | None = None


@dataclass
class Total:
    count: int
    sum: float


@dataclass
class Who:
    user: str
    token: str
    proof: str


@dataclass
class Count:
    to: int


@dataclass
class Wait:
    seconds: float


#: The ``Shop.tick`` streams running now.
TICKING: set[str] = set()


class Shop:
    """A typed handler with every call kind, and endpoints that fail in known ways."""

    async def price(self, req: Item) -> Item:
        return Item(name=req.name.upper(), price=req.price * 2, tags=[*req.tags, "priced"])

    async def total(self, req: Order) -> Total:
        return Total(count=len(req.items), sum=sum(i.price for i in req.items))

    async def whoami(self, req: Count) -> Who:
        context.set_header("x-served-by", "shop")
        return Who(
            user=context.get("x-user") or "",
            token=context.get("authorization") or "",
            proof=context.get("micro-local-proof") or context.get("x-micro-local-proof") or "",
        )

    async def missing(self, req: Item) -> Item:
        raise NotFound(f"no item {req.name}")

    async def taken(self, req: Item) -> Item:
        raise Conflict(f"{req.name} is taken")

    async def secret(self, req: Item) -> Item:
        raise Forbidden("not for you")

    async def boom(self, req: Item) -> Item:
        raise RuntimeError("password=hunter2 leaked")

    async def wait(self, req: Wait) -> Wait:
        await asyncio.sleep(req.seconds)
        return req

    async def count(self, req: Count) -> AsyncIterator[int]:
        for i in range(req.to):
            yield i

    async def tick(self, req: Count) -> AsyncIterator[int]:
        """One number every 10 ms; while it runs, its id is in :data:`TICKING`."""
        key = uuid.uuid4().hex
        TICKING.add(key)
        try:
            for i in range(req.to):
                yield i
                await asyncio.sleep(0.01)
        finally:
            TICKING.discard(key)

    async def explode(self, req: Count) -> AsyncIterator[int]:
        for i in range(req.to):
            yield i
        raise Conflict("stream broke")

    async def add(self, reqs: AsyncIterator[Item]) -> Total:
        items = [r async for r in reqs]
        return Total(count=len(items), sum=sum(i.price for i in items))

    async def chat(self, reqs: AsyncIterator[Item]) -> AsyncIterator[Item]:
        async for r in reqs:
            yield Item(name=r.name[::-1], price=r.price + 1)


def unique_name(prefix: str = "shop") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Running:
    url: str
    gateway: Gateway


async def start_gateway(options: APIOptions) -> tuple[Running, "asyncio.Task[None]", object]:
    import uvicorn

    gateway = Gateway(options)
    server = uvicorn.Server(config(gateway))
    sock = bind(options.address)
    host, port = sock.getsockname()[:2]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    task.add_done_callback(lambda _: sock.close())
    async with asyncio.timeout(30):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    return Running(f"http://{host}:{port}", gateway), task, server


@dataclass
class Query:
    text: str
    limit: int | None = None
    filters: dict[str, str] = field(default_factory=dict)


@dataclass
class Hits:
    items: list[Item]
    total: int


class Catalogue:
    """A well-behaved service for schemathesis: every input is either served or refused with a 4xx."""

    async def search(self, req: Query) -> Hits:
        limit = 3 if req.limit is None else max(0, min(req.limit, 3))
        items = [Item(name=f"{req.text}-{i}", tags=sorted(req.filters)) for i in range(limit)]
        return Hits(items=items, total=len(items))

    async def echo(self, req: Item) -> Item:
        return req

    async def total(self, req: Order) -> Total:
        prices = math.fsum(i.price for i in req.items) if all(math.isfinite(i.price) for i in req.items) else 0.0
        return Total(count=len(req.items), sum=prices if math.isfinite(prices) else 0.0)

    async def ping(self) -> str:
        return "pong"

    async def count(self, req: Count) -> AsyncIterator[int]:
        for i in range(max(0, min(req.to, 5))):
            yield i

    async def add(self, reqs: AsyncIterator[Item]) -> int:
        return len([r async for r in reqs])

    async def chat(self, reqs: AsyncIterator[Item]) -> AsyncIterator[Item]:
        async for r in reqs:
            yield r
