"""micro.testing: the harness and the helpers, as a service author's tests use them (issue #15)."""

import asyncio
import re
from dataclasses import dataclass

import pytest
from micro import Service, context
from micro.errors import BadRequest, Timeout
from micro.testing import Harness, call_handler, dependencies, worker


@dataclass
class Order:
    item: str
    quantity: int


class Prices:
    """A dependency the handler is given: in tests it is replaced."""

    async def price(self, item: str) -> int:
        raise AssertionError("the real price list is not reachable from a test")


class Shop:
    def __init__(self, prices: Prices, currency: str = "EUR") -> None:
        self.prices = prices
        self.currency = currency

    async def quote(self, order: Order) -> dict:
        if order.quantity < 1:
            raise BadRequest("quantity must be at least 1")
        context.set_header("X-Currency", self.currency)
        return {"total": order.quantity * await self.prices.price(order.item), "caller": context.get("X-Caller")}

    async def count(self, to: int):
        for n in range(1, to + 1):
            yield n


class Stock:
    def __init__(self) -> None:
        self.seen: list[dict] = []

    async def ordered(self, order: dict) -> None:
        if order["item"] == "poison":
            raise ValueError("poisoned order")
        self.seen.append(order)


class FixedPrices(Prices):
    async def price(self, item: str) -> int:
        return 5


class Front:
    """Calls another service (the dependency a fake service replaces) and publishes."""

    def __init__(self, client) -> None:
        self.client = client

    async def buy(self, order: Order) -> dict:
        quote = await self.client.call("shop", "Shop.quote", order)
        await self.client.publish("orders", {"item": order.item})
        return quote


async def test_services_call_each_other_and_the_test_calls_them(micro_harness: Harness):
    micro_harness.service("shop", Shop(FixedPrices()))
    front = micro_harness.service("front")
    front.handle(Front(front.client))
    assert await micro_harness.call("front", "Front.buy", Order("tea", 3)) == {"total": 15, "caller": None}
    assert await micro_harness.call(
        "shop", "Shop.quote", {"item": "tea", "quantity": 1}, metadata={"X-Caller": "t"}
    ) == {
        "total": 5,
        "caller": "t",
    }
    with pytest.raises(BadRequest, match="quantity"):
        await micro_harness.call("shop", "Shop.quote", Order("tea", 0))


async def test_a_handler_called_directly_sees_a_request_context():
    shop = Shop(FixedPrices(), currency="CHF")
    reply = await call_handler(shop.quote, Order("tea", 2), metadata={"X-Caller": "direct"})
    assert reply.value == {"total": 10, "caller": "direct"}
    assert reply.headers == {"X-Currency": "CHF"}
    assert (await call_handler(shop.count, 3)).value == [1, 2, 3]


async def test_worker_replaces_dependencies_with_mocks():
    shop = worker(Shop)
    prices = dependencies(shop)["prices"]
    prices.price.return_value = 7  # an autospec of Prices: its coroutine method is an AsyncMock
    assert (await call_handler(shop.quote, Order("tea", 2))).value == {"total": 14, "caller": None}
    prices.price.assert_awaited_once_with("tea")
    assert shop.currency == "EUR"  # parameters with a default keep it
    with pytest.raises(AttributeError):
        prices.no_such_method  # noqa: B018 - an autospec refuses what the real class lacks
    given = FixedPrices()
    assert worker(Shop, prices=given, currency="USD").prices is given
    with pytest.raises(TypeError, match="no parameter colour"):
        worker(Shop, colour="red")


async def test_waiting_for_a_subscriber_and_capturing_what_was_published(micro_harness: Harness):
    stock = Stock()
    micro_harness.service("shop", Shop(FixedPrices())).subscribe("orders", stock)
    front = micro_harness.service("front")
    front.handle(Front(front.client))
    async with micro_harness.handled("orders", service="shop") as waiter:
        await micro_harness.call("front", "Front.buy", Order("tea", 1))
    assert stock.seen == [{"item": "tea"}]  # handled, not merely delivered, when the block ends
    (result,) = waiter.results
    assert (result.service, result.topic, result.subscriber, result.error) == ("shop", "orders", "Stock.ordered", None)
    (published,) = micro_harness.published("orders")
    assert published.payload() == {"item": "tea"}
    assert published.content_type == "application/json"
    assert micro_harness.published("elsewhere") == []


async def test_a_failing_subscriber_is_raised_by_the_waiter(micro_harness: Harness):
    micro_harness.service("shop").subscribe("orders", Stock())
    with pytest.raises(ValueError, match="poisoned"):
        async with micro_harness.handled("orders"):
            await micro_harness.publish("orders", {"item": "poison"})


async def test_a_waiter_that_sees_nothing_times_out_with_a_clear_error(micro_harness: Harness):
    micro_harness.service("shop").subscribe("orders", Stock())
    with pytest.raises(Timeout, match=re.escape("0 of 1 messages (topic='orders') handled within 0.2s")):
        async with micro_harness.handled("orders", timeout=0.2):
            await micro_harness.publish("elsewhere", {"item": "tea"})


async def test_a_service_built_by_the_code_under_test_joins_through_wiring(micro_harness: Harness):
    service = Service("built", **micro_harness.wiring())
    service.handle(Shop(FixedPrices()))
    micro_harness.add(service)
    assert (await micro_harness.call("built", "Shop.quote", Order("tea", 1)))["total"] == 5
    with pytest.raises(ValueError, match=r"not built with harness\.wiring"):
        micro_harness.add(Service("stray", environ={"MICRO_BROKER": "memory", "MICRO_REGISTRY": "memory"}))


async def test_two_harnesses_never_meet():
    async with Harness() as one, Harness() as two:
        one.service("shop", Shop(FixedPrices()))
        two.service("elsewhere")
        await one.start()
        await two.start()
        assert [s.name for s in await one.registry.list_services()] == ["shop"]
        assert [s.name for s in await two.registry.list_services()] == ["elsewhere"]
        await one.publish("orders", {"item": "tea"})
        assert two.published() == []
    await asyncio.sleep(0)
