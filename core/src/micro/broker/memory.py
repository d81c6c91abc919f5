"""``memory``: an in-process broker that honours queue groups, acks and back-pressure.

Unlike Go Micro's memory broker (which ignores queues and runs handlers inside
``Publish``), delivery is asynchronous: each broadcast subscriber and each queue
group has a bounded mailbox, and every subscriber runs one task that takes
messages from its mailbox in order. Members of a queue group share the group's
mailbox, so each message is taken by exactly one of them. ``publish`` waits
while a mailbox is full.

Every memory broker on one event loop shares one set of topics (as the memory
transport shares one address table), so two Services built from
``MICRO_BROKER=memory`` in one process hear each other. Closing a broker
removes only its own subscribers. Brokers given different ``space`` names
(``MICRO_BROKER_SPACE``) are separate worlds.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import weakref
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

from ..errors import InvalidOption
from .base import Broker, Event, Handler, Message, Subscriber, dispatch
from .options import BrokerOptions, SubscribeOptions

__all__ = ["MemoryBroker", "MemoryBrokerOptions"]

logger = logging.getLogger("micro.broker")


@dataclass(frozen=True, kw_only=True, slots=True)
class MemoryBrokerOptions(BrokerOptions):
    """Settings of the ``memory`` broker (``MICRO_BROKER_QUEUE_SIZE`` and so on)."""

    #: Messages buffered per broadcast subscriber or queue group before ``publish`` waits.
    queue_size: int = 1024
    #: How many times a message that is nacked with requeue (or whose handler fails) is
    #: delivered again before it is dropped and logged.
    max_redeliveries: int = 3
    #: Seconds a running handler may take to finish when its subscriber is removed,
    #: before it is cancelled.
    close_timeout: float = 5.0
    #: Which set of topics this broker shares with the others on its event loop
    #: (``MICRO_BROKER_SPACE``); brokers in different spaces never hear each other.
    space: str = "default"

    def __post_init__(self) -> None:
        BrokerOptions.__post_init__(self)
        if not isinstance(self.space, str) or not self.space:
            raise InvalidOption(f"must be a non-empty string, got {self.space!r}", option="space")
        for name, low in (("queue_size", 1), ("max_redeliveries", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidOption(f"must be an integer >= {low}, got {value!r}", option=name)
        timeout = self.close_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout):
            raise InvalidOption(f"must be a number of seconds, got {timeout!r}", option="close_timeout")
        if timeout < 0:
            raise InvalidOption(f"must not be negative, got {timeout!r}", option="close_timeout")


class _Delivery:
    __slots__ = ("message", "redeliveries")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.redeliveries = 0


class _Mailbox:
    """A bounded FIFO shared by the members of one group; ``put`` waits while it is full."""

    def __init__(self, size: int) -> None:
        self._items: deque[_Delivery] = deque()
        self._size = size
        self._changed = asyncio.Condition()
        self.closed = False

    async def put(self, item: _Delivery) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.closed or len(self._items) < self._size)
            if not self.closed:
                self._items.append(item)
                self._changed.notify_all()

    async def requeue(self, item: _Delivery) -> None:
        # Goes to the front and may exceed the bound: a worker must never wait on its own mailbox.
        async with self._changed:
            if not self.closed:
                self._items.appendleft(item)
                self._changed.notify_all()

    async def get(self, member: _MemorySubscriber) -> _Delivery | None:
        """The next item, or ``None`` once the mailbox is closed or ``member`` is stopping."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.closed or member._stopping or bool(self._items))
            if self.closed or member._stopping:
                return None
            item = self._items.popleft()
            self._changed.notify_all()
            return item

    async def wake(self, *, close: bool = False) -> None:
        async with self._changed:
            if close:
                self.closed = True
                self._items.clear()
            self._changed.notify_all()


class _Group:
    """The subscribers that share one mailbox: one broadcast subscriber, or one queue group."""

    __slots__ = ("key", "mailbox", "members")

    def __init__(self, key: str, size: int) -> None:
        self.key = key
        self.mailbox = _Mailbox(size)
        self.members: set[_MemorySubscriber] = set()


class _Space:
    """The topics every memory broker on one event loop publishes to and subscribes on."""

    __slots__ = ("ids", "topics")

    def __init__(self) -> None:
        # topic -> group key -> group; a broadcast subscriber has a group of its own.
        self.topics: dict[str, dict[str, _Group]] = {}
        self.ids = itertools.count()


# One set of spaces per loop: asyncio's primitives belong to one loop, and a loop is what "in process" means here.
_SPACES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Space]] = weakref.WeakKeyDictionary()


def _space(name: str) -> _Space:
    spaces = _SPACES.setdefault(asyncio.get_running_loop(), {})
    space = spaces.get(name)
    if space is None:
        space = spaces[name] = _Space()
    return space


class _MemorySubscriber(Subscriber):
    def __init__(
        self, broker: MemoryBroker, topic: str, options: SubscribeOptions, handler: Handler, group: _Group
    ) -> None:
        super().__init__(topic, options)
        self._broker = broker
        self._handler = handler
        self._group = group
        self._close_timeout = broker.options.close_timeout

    async def _next(self) -> _Delivery | None:
        return await self._group.mailbox.get(self)

    async def _handle(self, item: _Delivery) -> None:
        event = Event(self.topic, item.message)
        outcome = await dispatch(self._handler, event, auto_ack=self.options.auto_ack)
        if outcome != "requeue":
            return
        limit = self._broker.options.max_redeliveries
        if item.redeliveries < limit:
            item.redeliveries += 1
            await self._group.mailbox.requeue(item)
        else:
            logger.warning("dropping a message on topic %r after %d redeliveries", self.topic, limit)

    async def _stop_delivery(self) -> None:
        await self._broker._remove(self)


class MemoryBroker(Broker):
    """Publish/subscribe between the tasks of one process. See the module docstring."""

    options_type: ClassVar[type[BrokerOptions]] = MemoryBrokerOptions
    options: MemoryBrokerOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"queue", "ack", "nack", "ordered"})

    def __init__(self, options: MemoryBrokerOptions | None = None) -> None:
        super().__init__(options)

    @property
    def address(self) -> str:
        return "memory"

    async def _publish(self, topic: str, message: Message) -> None:
        for group in list(_space(self.options.space).topics.get(topic, {}).values()):
            # Each group gets its own copy, so one handler changing the header cannot affect another.
            await group.mailbox.put(_Delivery(Message(message.body, message.header)))

    async def _subscribe(self, topic: str, handler: Handler, options: SubscribeOptions) -> Subscriber:
        space = _space(self.options.space)
        groups = space.topics.setdefault(topic, {})
        key = f"queue:{options.queue}" if options.queue is not None else f"subscriber:{next(space.ids)}"
        group = groups.get(key)
        if group is None:
            # A queue group's mailbox has the size of the broker that made it; later members join it as it is.
            group = groups[key] = _Group(key, self.options.queue_size)
        subscriber = _MemorySubscriber(self, topic, options, handler, group)
        group.members.add(subscriber)
        subscriber._start_task(f"micro.broker.memory:{topic}")
        return subscriber

    async def _remove(self, subscriber: _MemorySubscriber) -> None:
        group = subscriber._group
        group.members.discard(subscriber)
        last = not group.members
        if last:
            topics = _space(self.options.space).topics
            groups = topics.get(subscriber.topic, {})
            if groups.get(group.key) is group:
                del groups[group.key]
            if not groups:
                topics.pop(subscriber.topic, None)
        # The last member takes the group's pending messages with it; otherwise they stay for the others.
        await group.mailbox.wake(close=last)
