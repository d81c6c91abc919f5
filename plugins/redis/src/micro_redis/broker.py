"""``redis``: a broker on Redis Streams, shared by every process that points at one server.

**Layout.** A topic is the stream ``<key_prefix><topic>`` (by default ``micro:broker:<topic>``)
and a message one entry with the fields ``body`` (the bytes) and ``header`` (a JSON object).
``publish`` is one ``XADD``: it returns once Redis has stored the message. The broker sends one
pipeline of publishes at a time: a publish goes out at once when none is in flight, otherwise
with every publish that arrived meanwhile (up to 256, or about 1 MiB of bodies), in the next.
An idle publisher thus pays one round trip, and many concurrent ones share each round trip.
Each publish still succeeds or fails on its own (a failing ``XADD`` fails only its publisher).

**Broadcast subscribers** read the stream with ``XREAD``, each from the last entry that
existed when it subscribed, so each gets every message published after ``subscribe()``
returned. Nothing is kept on the server for them.

**Queue groups** are consumer groups named after the queue, created at the end of the
stream (``$``) by the first member; each member is a consumer of the group, so each message
goes to one member. The group outlives its members: messages published while a queue has
no member wait for the next one, as in a durable queue (``XGROUP DESTROY`` removes a queue
for good).

**Settlement and redelivery.**

* ``ack`` is an ``XACK``; ``nack(requeue=False)`` too (the message is dropped). Each queue
  member sends its acks on a connection of its own, one ``XACK`` at a time: an ack goes out as
  soon as the message is settled if no ``XACK`` is in flight, and otherwise with every other
  ack that queued up meanwhile, in the next one. An idle member thus acks each message at once
  (no timer), and a busy one sends one command per round trip however many messages it settles.
  An explicit ``await event.ack()`` (or ``nack(requeue=False)``) returns once Redis has the ack,
  and raises :class:`~micro.errors.BackendUnavailable` if the ``XACK`` carrying it fails. The
  automatic ack after a handler returns does not hold up the next message. A failed ``XACK``
  keeps its acks queued and is tried again with backoff; meanwhile the member keeps those
  messages claimed, and does not deliver them again if it reads them back after a reconnect
  (nor those whose ``XACK`` goes through while it reads them back).
* ``nack(requeue=True)``, a handler that raises, or a return without settling when
  ``auto_ack=False``: the subscriber delivers the message again at once, up to
  ``max_redeliveries`` times, then acks it away and logs the drop.
* A member that stops answering (crashed, cut off) leaves its unsettled messages pending in
  the group; once they have been idle ``claim_idle`` seconds another member claims them
  (``XAUTOCLAIM``) and delivers them again, counted by Redis's delivery counter against the
  same ``max_redeliveries``. While a handler runs, its member keeps its messages claimed, so
  a slow handler does not lose its message to another member.
* A member that unsubscribes first sends the acks it has queued (waiting at most
  ``request_timeout``), then hands the messages it read but did not settle (or could not ack)
  back to the group at once (they go to whichever member claims next), and removes itself
  from the group.
* Broadcast deliveries are settled in the subscriber: a redelivery comes from the same
  subscriber, and a process that dies loses the messages it had not handled yet.

Delivery is at least once: a member that claims a message while its first holder is in
fact still alive, and a publish sent again after a broken connection, can deliver twice.

**Connections.** The publish pipelines and the group's bookkeeping (claims, hand-backs) share a
pool of ``pool_size`` connections; each subscriber reads on a connection of its own (blocking
``XREAD``/``XREADGROUP``), so a read never holds a shared one, and a queue member acks on a
second connection of its own. Publishes queue in arrival order: however many publishers there
are, a publish waits its turn (back-pressure), and only the pipeline itself is bounded by
``request_timeout``. A subscriber whose connection breaks connects again with backoff (50 ms
doubling to 5 s, jittered) and resumes: broadcast after the last message it handled, a queue
member with the messages the group had already given it, then new ones. A command on the
shared connections whose connection broke is sent once more on a new connection (a pipeline:
all of it). ``start()``
fails with :class:`~micro.errors.BackendUnavailable` naming the address and
``MICRO_BROKER_ADDRESS`` when Redis cannot be reached.

**Overflow.** A topic's *backlog* is what its queue groups still need: for each group, the
entries from the oldest one it has not settled (pending, ``XPENDING``) or, with nothing pending,
not received (after its ``last-delivered-id``) to the end of the stream; the largest over the
groups. Everything older is trimmed (``XTRIM MINID``), since no group needs it. ``max_length``
bounds the backlog, and ``overflow`` says what happens when it is full:

* ``"block"`` (the default): publishes wait for room, first come first served, up to
  ``overflow_timeout`` seconds, then fail with :class:`~micro.errors.Timeout` without having been
  sent; nothing is trimmed that a group still needs, so no confirmed message is ever lost to the
  bound. A group with no member left keeps its backlog too: publishes wait (and fail) until a
  member catches up or the group is removed (``XGROUP DESTROY``). This is the default because the
  alternative loses confirmed messages, and it must be asked for.
* ``"trim"``: publishes never wait; the stream is trimmed to ``max_length`` entries, and the
  removed ones that the group furthest behind had not received are counted in
  :attr:`RedisBroker.dropped` and logged (a warning at most every 10 s per topic, with the count
  since the last one). Unsettled messages trimmed away are not counted there (their handler has
  them); if they must be delivered again (a failed handler, a crashed member), the member that
  reads them back logs that they are gone.

The check is a Lua script (``XINFO GROUPS``, ``XPENDING``, ``XTRIM``, ``XLEN``) that a publish
pipeline carries after its ``XADD``s, in the same round trip, for each stream it publishes to when
the last check is 0.1 s old or the stream may have outgrown ``max_length`` since; between checks,
a publisher counts its own publishes. The first publish to a stream (``"block"``) and publishes
waiting for room pay a check of their own (every 5-100 ms while they wait). Several publishers
each keep their own count, so together they may exceed ``max_length`` by a pipeline or so; that
costs memory, never a message. A topic without queue groups is trimmed to its last
``max_length`` entries. Needs Redis 6.2 or later (``XTRIM MINID``).

**Limits.** A broadcast subscriber has no state on the server, so back-pressure does not wait
for it: one that falls more than ``max_length`` messages behind loses the oldest ones it has not
read. A member that crashes leaves its (empty) consumer in the
group; ``XGROUP DELCONSUMER`` removes it. One publisher's messages reach each subscriber in
publish order, redeliveries aside.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import logging
import os
import random
import socket
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import orjson
from micro.broker import Broker, Event, Handler, Message, SubscribeOptions, Subscriber
from micro.broker.base import dispatch
from micro.errors import ConnectionClosed, MicroError, Timeout
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._client import Server
from ._errors import translated
from .options import RedisBrokerOptions

__all__ = ["RedisBroker"]

logger = logging.getLogger("micro.broker")

_BODY: Final = b"body"
_HEADER: Final = b"header"
# A subscriber's blocking read returns at least this often (seconds), to claim idle messages.
_BLOCK: Final = 1.0
_FIRST_BACKOFF: Final = 0.05
_MAX_BACKOFF: Final = 5.0
# The consumer that a leaving member parks its unsettled messages with, already idle, for others to claim.
_RELEASED: Final = "~released"
_LOST: Final = (RedisConnectionError, RedisTimeoutError, OSError)
# The most publishes (and, roughly, body bytes) one pipeline carries.
_PIPELINE: Final = 256
_PIPELINE_BYTES: Final = 1 << 20

# A queued publish: the stream, the entry's fields, and what the publisher awaits.
_Publish = tuple[bytes, dict[bytes, bytes], "asyncio.Future[None]"]

# A pipeline carries the backlog check of a stream it publishes to when the last one is older than this
# (seconds), or when the stream may have outgrown max_length since. See "Overflow" in the module docstring.
_CHECK_EVERY: Final = 0.1
# While publishes wait for room, the stream is checked again after this long, doubling up to _MAX_POLL.
_FIRST_POLL: Final = 0.005
_MAX_POLL: Final = 0.1
# A topic logs the messages its trims dropped at most this often (seconds), with the count since the last line.
_LOG_EVERY: Final = 10.0
# What a publisher remembers of streams it no longer publishes to is forgotten past this many streams.
_BACKLOGS: Final = 4096

# The backlog check of one stream, run by Redis after the pipeline's XADDs (so in the same round trip):
#   1. Trim what every queue group is done with: entries older than the oldest one some group has not
#      settled (pending) or not received yet (after its last-delivered-id). A stream without groups is
#      trimmed to max_length (ARGV[1]): nobody the server knows of still needs the rest.
#   2. With ARGV[2] == "trim" and more than max_length entries left: trim to max_length, counting the
#      removed entries that the group furthest behind had not received (its last-delivered-id is older).
# Returns {backlog, length, dropped}: entries some group still needs, the stream's length, and that count.
# Ids rather than Redis 7's per-group "lag": entries-read is not corrected when a trim removes entries a
# group had not read (lag stays too high from then on), and it is missing on Redis 6.2.
_CHECK: Final = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
if redis.call('EXISTS', key) == 0 then return {0, 0, 0} end
local function older(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, bms = tonumber(ams), tonumber(bms)
  if ams ~= bms then return ams < bms end
  return tonumber(aseq) < tonumber(bseq)
end
local needed, behind = nil, nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  local delivered = info['last-delivered-id']
  local oldest = delivered
  if info['pending'] > 0 then
    local first = redis.call('XPENDING', key, info['name'])[2]
    if older(first, oldest) then oldest = first end
  end
  if needed == nil or older(oldest, needed) then needed = oldest end
  if behind == nil or older(delivered, behind) then behind = delivered end
end
if needed == nil then
  redis.call('XTRIM', key, 'MAXLEN', '=', limit)
  return {0, redis.call('XLEN', key), 0}
end
redis.call('XTRIM', key, 'MINID', '=', needed)
local length = redis.call('XLEN', key)
if ARGV[2] == 'trim' and length > limit then
  local excess = length - limit
  local received = #redis.call('XRANGE', key, '-', behind, 'COUNT', excess)
  redis.call('XTRIM', key, 'MAXLEN', '=', limit)
  return {limit, limit, excess - received}
end
return {length, length, 0}
"""
_CHECK_SHA: Final = hashlib.sha1(_CHECK.encode()).hexdigest()


@dataclass(slots=True, eq=False)
class _Backlog:
    """What this publisher knows of one stream's backlog, from its last check and the publishes since."""

    topic: str
    #: Entries some queue group still needs, and the stream's length, at the last check.
    needed: int = 0
    length: int = 0
    #: Publishes since the last check: let in (queued or in a pipeline), and sent successfully.
    admitted: int = 0
    sent: int = 0
    checked_at: float = float("-inf")
    #: Publishes waiting for room (overflow="block"), first come first served, and the task polling for it.
    waiters: collections.deque[tuple[asyncio.Future[None], float]] = field(default_factory=collections.deque)
    poller: asyncio.Task[None] | None = None
    #: Set (and replaced) by each check, for the poller to wait on.
    checked: asyncio.Event = field(default_factory=asyncio.Event)

    def estimate(self) -> int:
        """The backlog if none of these publishes has been consumed yet: an upper bound, for admission."""
        return self.needed + self.sent + self.admitted

    def idle(self) -> bool:
        return not self.admitted and not self.waiters and self.poller is None


def _encode(message: Message) -> dict[bytes, bytes]:
    return {_BODY: message.body, _HEADER: orjson.dumps(dict(message.header))}


def _decode(fields: Mapping[bytes, bytes] | None) -> Message | None:
    """The message in a stream entry, or ``None`` if the entry was not written by this broker."""
    if not fields or _BODY not in fields:
        return None
    try:
        header = orjson.loads(fields.get(_HEADER, b"{}"))
    except orjson.JSONDecodeError:
        return None
    if not isinstance(header, dict) or not all(isinstance(v, str) for v in header.values()):
        return None
    return Message(fields[_BODY], header)


class _Acks:
    """A queue member's settled entries on their way to Redis, each ``XACK`` carrying all that queued up.

    Acks go on a connection of their own, so they neither wait for the member's blocking read nor
    queue behind publishes on the shared pool. See "Settlement and redelivery" in the module docstring.
    """

    def __init__(self, subscriber: _RedisSubscriber, queue: str) -> None:
        server = subscriber._broker._server
        self._where = server.where
        self._topic = subscriber.topic
        self._stream = subscriber._stream
        self._queue = queue
        self._redis = server.client(subscriber._name)
        # Insertion-ordered sets of entry ids: waiting for the next XACK, and carried by the one in flight.
        self._queued: dict[bytes, None] = {}
        self._sending: dict[bytes, None] = {}
        # Made only when an explicit ack waits: settled by the XACK in flight, and by the next one.
        self._current: asyncio.Future[None] | None = None
        self._next: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # cuts a backoff short when the subscriber closes
        self._closed = False
        # While the member reads its own entries back: those acked since the read was sent (see read_back).
        self._acked_meanwhile: set[bytes] | None = None

    def __contains__(self, entry_id: object) -> bool:
        """Whether ``entry_id`` was settled here and Redis has not been told yet, or was told during a read-back."""
        return (
            entry_id in self._queued
            or entry_id in self._sending
            or (self._acked_meanwhile is not None and entry_id in self._acked_meanwhile)
        )

    @contextlib.contextmanager
    def read_back(self) -> Iterator[None]:
        """Around a read of the member's own pending entries, and their handling: remember what is acked meanwhile.

        Redis may answer the read with entries whose ``XACK`` it takes right after, and that ``XACK``
        may succeed before the member looks at them; they are settled all the same.
        """
        self._acked_meanwhile = set()
        try:
            yield
        finally:
            self._acked_meanwhile = None

    def unsent(self) -> list[bytes]:
        """The entries settled here that Redis still has pending (and that must stay claimed)."""
        return [*self._sending, *self._queued]

    def add(self, entry_id: bytes) -> None:
        """Queue an ack for ``entry_id``; it goes out with the next ``XACK``, at once if none is in flight."""
        if self._closed:
            logger.warning(
                "could not ack a message on topic %r (subscriber closed); it will be delivered again", self._topic
            )
            return
        if entry_id not in self:
            self._queued[entry_id] = None
        if self._task is None:
            self._task = asyncio.create_task(self._flush(), name=f"micro.broker.redis.acks:{self._topic}")

    async def sent(self, entry_id: bytes) -> None:
        """Queue an ack for ``entry_id`` and return once an ``XACK`` carrying it succeeded.

        Raises what that ``XACK`` failed with (:class:`~micro.errors.BackendUnavailable` for a
        lost server); the ack stays queued and is sent again with the next attempt.
        """
        if self._closed:
            raise ConnectionClosed("the subscriber is closed; the message will be delivered again")
        self.add(entry_id)
        if entry_id in self._sending:
            if self._current is None:
                self._current = asyncio.get_running_loop().create_future()
            future = self._current
        else:
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
            future = self._next
        # Shielded: several acks share the future, and one caller's cancellation must not cancel it for all.
        await asyncio.shield(future)

    async def _flush(self) -> None:
        backoff = _FIRST_BACKOFF
        try:
            while self._queued:
                self._sending, self._queued = self._queued, {}
                self._current, self._next = self._next, None
                failure: Exception | None = None
                try:
                    with translated(self._where):
                        await self._redis.xack(self._stream, self._queue, *self._sending)
                except Exception as exc:
                    failure = exc
                sent, self._sending = self._sending, {}
                waiters, self._current = self._current, None
                if failure is None:
                    if self._acked_meanwhile is not None:
                        self._acked_meanwhile.update(sent)
                    _settle(waiters, None)
                    backoff = _FIRST_BACKOFF
                    continue
                # Back in front of those that queued meanwhile, to be sent again.
                self._queued = {**sent, **self._queued}
                _settle(waiters, failure)
                if self._closed:
                    logger.warning(
                        "could not ack %d message(s) on topic %r (%s); they will be delivered again",
                        len(self._queued),
                        self._topic,
                        failure,
                    )
                    self._queued.clear()
                    return
                logger.debug(
                    "could not ack %d message(s) on topic %r (%s); retrying", len(self._queued), self._topic, failure
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(random.uniform(backoff / 2, backoff)):
                        await self._hurry.wait()
                backoff = min(backoff * 2, _MAX_BACKOFF)
        finally:
            self._task = None

    async def close(self, timeout: float) -> None:
        """Send what is queued (trying once more if an ``XACK`` is backing off), waiting at most ``timeout``.

        What cannot be acked stays pending in the group, for the caller to hand back.
        """
        self._closed = True
        self._hurry.set()
        task = self._task
        try:
            if task is not None:
                await asyncio.wait({task}, timeout=timeout)
        finally:
            if task is not None and not task.done():
                logger.warning(
                    "could not ack %d message(s) on topic %r within %gs; they will be delivered again",
                    len(self.unsent()),
                    self._topic,
                    timeout,
                )
                task.cancel()
            gone = ConnectionClosed("the subscriber is closed; the message will be delivered again")
            _settle(self._current, gone)
            _settle(self._next, gone)
            self._current = self._next = None
            self._queued.clear()
            self._sending.clear()
            await self._redis.aclose()


def _settle(future: asyncio.Future[None] | None, failure: BaseException | None) -> None:
    if future is None or future.done():
        return
    if failure is None:
        future.set_result(None)
    else:
        future.set_exception(failure)
        future.exception()  # the waiters re-raise it; asyncio need not log it as never retrieved


class _RedisEvent(Event):
    """An event whose ack (and drop) is sent to Redis as soon as the handler settles it."""

    __slots__ = ("_id", "_returned", "_subscriber", "acknowledged")

    def __init__(self, topic: str, message: Message, subscriber: _RedisSubscriber, id: bytes) -> None:
        super().__init__(topic, message)
        self._subscriber = subscriber
        self._id = id
        # Set once the handler has returned: an ack from then on is the automatic one.
        self._returned = False
        #: Whether Redis is known to have the ack (always true for a broadcast subscriber, which has no
        #: server state); an ack that is queued but not yet sent does not count.
        self.acknowledged = False

    async def ack(self) -> None:
        if self.outcome is None:
            self._settle("ack")
            if self._returned:
                # The automatic ack: queued, so that it does not hold up the next message.
                self._subscriber._settled(self._id)
            else:
                await self._subscriber._acknowledge(self)

    async def nack(self, requeue: bool = True) -> None:
        if self.outcome is None:
            self._settle("requeue" if requeue else "drop")
            if not requeue:
                await self._subscriber._acknowledge(self)


class _RedisSubscriber(Subscriber):
    """One subscription: a task reading the topic's stream on a connection of its own."""

    def __init__(
        self,
        broker: RedisBroker,
        topic: str,
        options: SubscribeOptions,
        handler: Handler,
        *,
        consumer: str,
        start_after: bytes,
    ) -> None:
        super().__init__(topic, options)
        self._broker = broker
        self._handler = handler
        self._stream = broker._stream(topic)
        self._consumer = consumer
        self._after = start_after  # broadcast: the last entry read
        self._reading = False
        # Entries this member has read and not settled yet (queue groups), kept claimed while it works.
        self._holding: set[bytes] = set()
        opts = broker.options
        self._block = min(_BLOCK, opts.claim_idle / 2)
        self._name = f"micro-broker-{consumer}"
        self._redis = broker._server.client(
            self._name, pool_size=1, read_timeout=self._block + broker._server.request_timeout
        )
        self._acks = _Acks(self, options.queue) if options.queue is not None else None
        self._close_timeout = opts.close_timeout

    def _start(self) -> asyncio.Task[None]:
        return self._start_task(f"micro.broker.redis:{self.topic}")

    # -- the read loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        keeper = asyncio.create_task(self._keep_claimed()) if self.queue is not None else None
        try:
            await self._loop()
        finally:
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            await self._leave()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = _FIRST_BACKOFF
        # A member first takes what the group gave it before (nothing on a first start), from this id on.
        history: bytes | None = b"0" if self.queue is not None else None
        next_claim = loop.time()
        cursor = b"0-0"
        outage = False
        while not self._stopping:
            try:
                if self.queue is None:
                    await self._broadcast_batch()
                elif history is not None:
                    history = await self._group_batch(history)
                elif loop.time() >= next_claim:
                    cursor = await self._claim_batch(cursor)
                    # Keep claiming while the scan has more; otherwise look again in half an idle period.
                    next_claim = loop.time() + (0 if cursor != b"0-0" else self._broker.options.claim_idle / 2)
                else:
                    await self._group_batch(b">", block=max(0.001, min(self._block, next_claim - loop.time())))
                if outage:
                    logger.info("broker subscriber for topic %r is reading again", self.topic)
                    outage = False
                backoff = _FIRST_BACKOFF
            except (*_LOST, MicroError) as exc:
                if not outage:
                    logger.warning(
                        "broker subscriber for topic %r lost %s (%s); reconnecting",
                        self.topic,
                        self._broker._server.where,
                        exc,
                    )
                outage = True
                history = b"0" if self.queue is not None else None
                await asyncio.sleep(random.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, _MAX_BACKOFF)
            except ResponseError as exc:
                if self.queue is not None and str(exc).startswith("NOGROUP"):
                    # The stream or the group was deleted under us: make a new group from now on.
                    logger.warning("queue %r of topic %r vanished from Redis; recreating it", self.queue, self.topic)
                    with contextlib.suppress(MicroError):  # if Redis is gone too, the next read says so
                        await self._broker._create_group(self._stream, self.queue)
                    continue
                logger.error("broker subscriber for topic %r: %s", self.topic, exc)
                await asyncio.sleep(random.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, _MAX_BACKOFF)
            except Exception:
                # A subscription must not end silently: report the surprise and keep reading.
                logger.exception("broker subscriber for topic %r failed; retrying", self.topic)
                await asyncio.sleep(random.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _read(self, call: Any) -> Any:
        self._reading = True
        try:
            return await call
        finally:
            self._reading = False

    async def _broadcast_batch(self) -> None:
        opts = self._broker.options
        reply = await self._read(
            self._redis.xread({self._stream: self._after}, count=opts.prefetch, block=round(self._block * 1000))
        )
        for entry_id, fields in reply[0][1] if reply else ():
            if self._stopping:
                return
            await self._deliver(entry_id, fields, deliveries=1)
            self._after = entry_id

    async def _group_batch(self, start: bytes, *, block: float | None = None) -> bytes | None:
        """Read and handle one batch of the group's entries: new ones (``>``) or this member's own after ``start``.

        Returns the id of the batch's last entry (``None`` if it had none), where the next read of
        this member's own entries starts: those whose acks are still queued stay pending meanwhile.
        """
        assert self.queue is not None
        assert self._acks is not None
        # Reading its own entries back, the member must not deliver again one acked after Redis answered.
        with self._acks.read_back() if start != b">" else contextlib.nullcontext():
            reply = await self._read(
                self._redis.xreadgroup(
                    self.queue,
                    self._consumer,
                    {self._stream: start},
                    count=self._broker.options.prefetch,
                    block=None if block is None else max(1, round(block * 1000)),
                )
            )
            entries = reply[0][1] if reply else []
            if start == b">":
                await self._handle([(entry_id, fields, 1) for entry_id, fields in entries])
            else:
                await self._handle(await self._with_counts(entries))
        return bytes(entries[-1][0]) if entries else None

    async def _claim_batch(self, cursor: bytes) -> bytes:
        """Claim entries other members left idle for ``claim_idle``, handle them, and return the next cursor."""
        assert self.queue is not None
        opts = self._broker.options
        reply = await self._read(
            self._redis.xautoclaim(
                self._stream,
                self.queue,
                self._consumer,
                round(opts.claim_idle * 1000),
                start_id=cursor,
                count=opts.prefetch,
            )
        )
        next_cursor, entries = reply[0], reply[1]
        if len(reply) > 2 and reply[2]:  # Redis 7 drops claimed ids that were trimmed and lists them here
            self._lost_to_trim(len(reply[2]))
        if entries:
            logger.info("claimed %d idle message(s) of queue %r on topic %r", len(entries), self.queue, self.topic)
            await self._handle(await self._with_counts(entries))
        return bytes(next_cursor)

    async def _with_counts(self, entries: list[Any]) -> list[tuple[bytes, Any, int]]:
        """``entries`` with how many times Redis has delivered each (this delivery included)."""
        if not entries:
            return []
        assert self.queue is not None
        pending = await self._redis.xpending_range(
            self._stream,
            self.queue,
            min=entries[0][0],
            max=entries[-1][0],
            count=len(entries) + self._broker.options.prefetch,
            consumername=self._consumer,
        )
        counts = {row["message_id"]: int(row["times_delivered"]) for row in pending}
        return [(entry_id, fields, counts.get(entry_id, 1)) for entry_id, fields in entries]

    async def _handle(self, entries: list[tuple[bytes, Any, int]]) -> None:
        self._holding = {entry_id for entry_id, _, _ in entries}
        # Read back (after a reconnect, or claimed) without fields: trimmed from the stream while unsettled,
        # which only overflow="trim" (or a trim from outside the broker) does. Lost, so said once per batch.
        trimmed = sum(1 for _, fields, _ in entries if not fields)
        if trimmed:
            self._lost_to_trim(trimmed)
        for entry_id, fields, deliveries in entries:
            if self._stopping:
                return  # what is left is handed back to the group by _leave()
            # One read back (after a reconnect) while its ack waits to be sent is settled already.
            if self._acks is None or entry_id not in self._acks:
                await self._deliver(entry_id, fields, deliveries)
            self._holding.discard(entry_id)

    def _lost_to_trim(self, count: int) -> None:
        logger.warning(
            "queue %r on topic %r: %d unsettled message(s) were trimmed from the stream (max_length=%d,"
            " overflow=%r) and cannot be delivered again",
            self.queue,
            self.topic,
            count,
            self._broker.options.max_length,
            self._broker.options.overflow,
        )

    async def _deliver(self, entry_id: bytes, fields: Any, deliveries: int) -> None:
        """Hand one entry to the handler, redelivering it as the module docstring says, and settle it."""
        limit = self._broker.options.max_redeliveries
        message = _decode(fields)
        if message is None:
            if fields:  # an entry trimmed from the stream reads back empty (counted and logged by _handle)
                logger.warning("dropping entry %s of %r: not a message of this broker", entry_id, self._stream)
            self._settled(entry_id)  # unreadable, or trimmed from the stream: nothing to deliver
            return
        if deliveries > limit + 1:
            logger.warning("dropping a message on topic %r after %d redeliveries", self.topic, limit)
            self._settled(entry_id)
            return
        while True:
            event = _RedisEvent(self.topic, message, self, entry_id)
            event.acknowledged = self.queue is None
            outcome = await dispatch(self._handle_event, event, auto_ack=self.options.auto_ack)
            if outcome != "requeue":
                if not event.acknowledged:
                    self._settled(entry_id)
                return
            if self._stopping:
                return  # still pending: handed back to the group (or, broadcast, gone with the subscriber)
            if deliveries > limit:
                logger.warning("dropping a message on topic %r after %d redeliveries", self.topic, limit)
                self._settled(entry_id)
                return
            deliveries += 1
            if self.queue is not None and not await self._reclaim(entry_id):
                return  # another member has it now
            message = Message(message.body, message.header)

    async def _handle_event(self, event: Event) -> None:
        """The handler, marking ``event`` as returned from it (see :meth:`_RedisEvent.ack`)."""
        await self._handler(event)
        assert isinstance(event, _RedisEvent)
        event._returned = True

    # -- talking to the group ----------------------------------------------------------------------

    async def _acknowledge(self, event: _RedisEvent) -> None:
        """Tell Redis that ``event`` is settled; raises BackendUnavailable if it cannot (the ack stays queued)."""
        if event.acknowledged:
            return
        assert self._acks is not None
        await self._acks.sent(event._id)
        event.acknowledged = True

    def _settled(self, entry_id: bytes) -> None:
        """Queue the ``XACK`` of ``entry_id`` (sent, and retried, by ``_acks``) without waiting for it."""
        if self._acks is not None:
            self._acks.add(entry_id)

    async def _reclaim(self, entry_id: bytes) -> bool:
        """Count a redelivery of ``entry_id`` with Redis (``XCLAIM`` to ourselves); whether it is still pending."""
        assert self.queue is not None
        queue = self.queue
        claimed = await self._broker._call(
            lambda client: client.xclaim(self._stream, queue, self._consumer, 0, [entry_id], justid=False)
        )
        return bool(claimed)

    async def _keep_claimed(self) -> None:
        """While entries are held, reset their idle time every ``claim_idle / 3`` so no other member claims them."""
        assert self.queue is not None
        queue = self.queue
        period = self._broker.options.claim_idle / 3
        while True:
            await asyncio.sleep(period)
            held: list[Any] = [*self._holding, *(self._acks.unsent() if self._acks is not None else ())]
            if not held:
                continue
            try:
                await self._broker._call(
                    lambda client, held=held: client.xclaim(self._stream, queue, self._consumer, 0, held, justid=True)
                )
            except MicroError as exc:
                logger.debug("could not refresh the claim on %d message(s): %s", len(held), exc)

    async def _leave(self) -> None:
        """Send queued acks, hand unsettled entries back to the group, leave it, and close the connections."""
        try:
            if self._acks is not None:
                await self._acks.close(self._broker._server.request_timeout)
            if self.queue is not None:
                await self._hand_back(self.queue)
        except MicroError as exc:
            logger.warning(
                "queue %r on topic %r: could not hand back unsettled messages (%s); they will be claimed after %gs",
                self.queue,
                self.topic,
                exc,
                self._broker.options.claim_idle,
            )
        finally:
            await self._redis.aclose()

    async def _hand_back(self, queue: str) -> None:
        idle = round(self._broker.options.claim_idle * 1000)

        async def release(client: Redis) -> None:
            previous: list[Any] = []
            while pending := await client.xpending_range(
                self._stream, queue, min="-", max="+", count=100, consumername=self._consumer
            ):
                ids: list[Any] = [row["message_id"] for row in pending]
                if ids == previous:
                    return  # they did not move; the consumer stays, and its entries are claimed after claim_idle
                previous = ids
                # Parked with a consumer nobody reads as, already idle: the next XAUTOCLAIM of any member takes them.
                await client.xclaim(self._stream, queue, _RELEASED, 0, ids, idle=idle, justid=True)
            await client.xgroup_delconsumer(self._stream, queue, self._consumer)

        await self._broker._call(release)

    # -- stopping ----------------------------------------------------------------------------------

    def _interruptible(self) -> bool:
        # A blocking read holds nothing (the group keeps what it did not deliver), so it is cut short.
        return self._reading


class RedisBroker(Broker):
    """Publish/subscribe on Redis Streams with queue groups, acks and redelivery. See the module docstring."""

    options_type: ClassVar[type[RedisBrokerOptions]] = RedisBrokerOptions
    options: RedisBrokerOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"queue", "ack", "nack", "ordered", "cross-process"})

    def __init__(self, options: RedisBrokerOptions | None = None) -> None:
        super().__init__(options)
        self._server = Server.of(self.options, "broker")
        self._prefix = self.options.key_prefix.encode()
        self._redis: Redis | None = None
        # Every command on the shared pool first takes a slot, so the pool itself never makes anyone wait.
        # Its own wait is unfair (a caller that arrives as a connection is released takes it ahead of those
        # already waiting, who go back to the end of the line) and bounded by request_timeout, so under
        # many concurrent publishers some publish failed with "No connection available"; this queue is FIFO.
        self._slots = asyncio.Semaphore(self.options.pool_size)
        self._tasks: set[asyncio.Task[None]] = set()
        # Publishes waiting for the next pipeline, in arrival order, and the task sending them.
        self._outbox: collections.deque[_Publish] = collections.deque()
        self._sender: asyncio.Task[None] | None = None
        # Per stream published to, its backlog as last checked (most recently used last); the streams
        # whose check is wanted in the next pipeline even without a publish (publishes wait for room).
        self._backlogs: collections.OrderedDict[bytes, _Backlog] = collections.OrderedDict()
        self._checks_wanted: set[bytes] = set()
        # Messages this broker's trims dropped before every queue group received them, per topic; and
        # the rate-limited log line about them (what it has not told yet, when it last did, the next one).
        self._dropped: dict[str, int] = {}
        self._untold: dict[str, int] = {}
        self._told_at: dict[str, float] = {}
        self._tell_later: dict[str, asyncio.TimerHandle] = {}
        # Consumer names say where a member runs, for XINFO CONSUMERS; the suffix makes each one unique.
        self._id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        #: What its connections are named in ``CLIENT LIST``: this, or this and ``:<n>`` for a subscriber's.
        self.client_name = f"micro-broker-{self._id}"
        self._serial = itertools.count(1)

    @property
    def address(self) -> str:
        """The server, without credentials: ``127.0.0.1:6379``."""
        return self._server.address

    @property
    def dropped(self) -> dict[str, int]:
        """Per topic, the messages this broker's trims removed before every queue group had received them.

        Only ``overflow="trim"`` trims such messages; each one counted here is also in a log line
        (at most one every 10 s per topic, with the count since the previous one). Trims made by
        other publishers are counted by them. A copy: it does not change afterwards.
        """
        return dict(self._dropped)

    async def _start(self) -> None:
        """Connect and check that the server answers.

        Raises :class:`~micro.errors.BackendUnavailable` naming the address and
        ``MICRO_BROKER_ADDRESS`` if it does not within ``connect_timeout``, and
        :class:`~micro.errors.Unauthorized` if it refuses the credentials.
        """
        client = await self._server.connect(self.client_name, retries=1)
        try:
            # Pipelines run the backlog check by its digest; loading it now spares the first one a NOSCRIPT.
            with translated(self._server.where):
                await client.script_load(_CHECK)
        except BaseException:
            await client.aclose()
            raise
        self._redis = client

    async def _close(self) -> None:
        """Disconnect, once the base has unsubscribed everything (handing unsettled queue messages back)."""
        # Subscribers that unsubscribed from inside their handler may still be finishing.
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        # Publishes waiting for room are not sent; those already let in are (each pipeline is bounded).
        closed = ConnectionClosed("the redis broker closed while the publish waited for room; it was not sent")
        for backlog in self._backlogs.values():
            while backlog.waiters:
                _settle(backlog.waiters.popleft()[0], closed)
            if backlog.poller is not None:
                backlog.poller.cancel()
        self._checks_wanted.clear()
        if self._sender is not None:
            await asyncio.wait({self._sender})
        for handle in self._tell_later.values():
            handle.cancel()
        for topic in list(self._untold):
            self._tell(topic)
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

    def _client(self) -> Redis:
        # The base starts the broker on first use and refuses it once closed; close() takes the
        # client away only after that, so a call still running then finds it gone here.
        if self._redis is None:
            raise ConnectionClosed("the redis broker is closed")
        return self._redis

    def _stream(self, topic: str) -> bytes:
        return self._prefix + topic.encode()

    async def _call(self, command: Any) -> Any:
        """``await command(client)`` on the shared connections, with driver errors translated."""
        client = self._redis
        if client is None:
            raise ConnectionClosed("the redis broker is closed")
        async with self._slots:
            with translated(self._server.where):
                return await command(client)

    async def _create_group(self, stream: bytes, queue: str) -> None:
        try:
            await self._call(lambda client: client.xgroup_create(stream, queue, id="$", mkstream=True))
        except MicroError as exc:
            if "BUSYGROUP" not in str(exc):  # it exists already: join it
                raise

    async def _publish(self, topic: str, message: Message) -> None:
        """Publish ``message``; see "Overflow" in the module docstring for a topic whose backlog is full.

        Raises :class:`~micro.errors.Timeout` (nothing published) when ``overflow="block"`` and the
        backlog stayed full for ``overflow_timeout``.
        """
        self._client()
        stream = self._stream(topic)
        fields = _encode(message)
        backlog = self._backlog(stream, topic)
        if self.options.overflow == "block":
            await self._room(stream, backlog)
        else:
            backlog.admitted += 1
        sent = asyncio.get_running_loop().create_future()
        self._outbox.append((stream, fields, sent))
        self._send()
        await sent

    def _send(self) -> None:
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_publishes(), name="micro.broker.redis.publish")

    def _backlog(self, stream: bytes, topic: str) -> _Backlog:
        """The backlog of ``stream``, made on first use; the least recently used idle ones beyond a bound go."""
        backlog = self._backlogs.get(stream)
        if backlog is not None:
            self._backlogs.move_to_end(stream)
            return backlog
        backlog = self._backlogs[stream] = _Backlog(topic)
        excess = len(self._backlogs) - _BACKLOGS
        if excess > 0:
            for old in list(itertools.islice(self._backlogs, excess)):
                if self._backlogs[old].idle():
                    del self._backlogs[old]
        return backlog

    async def _room(self, stream: bytes, backlog: _Backlog) -> None:
        """Let one publish in once the backlog has room (overflow="block"), first come first served.

        Raises :class:`~micro.errors.Timeout` when a check made after ``overflow_timeout`` still
        finds it full (with ``0``: the first check), and ConnectionClosed if the broker closes.
        The first publish to a stream waits for a check in any case.
        """
        # The first publish to a stream waits for its first check: a publisher starting against a full
        # backlog must not add to it (one round trip per stream, not per publish).
        known = backlog.checked_at > float("-inf")
        if known and not backlog.waiters and backlog.estimate() < self.options.max_length:
            backlog.admitted += 1
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (waiter, loop.time() + self.options.overflow_timeout)
        backlog.waiters.append(entry)
        if backlog.poller is None:
            backlog.poller = asyncio.create_task(self._poll(stream, backlog), name="micro.broker.redis.room")
        try:
            await waiter
        except asyncio.CancelledError:
            if entry in backlog.waiters:
                backlog.waiters.remove(entry)
            elif waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                backlog.admitted -= 1  # let in as it was cancelled: give the room back
            raise

    async def _poll(self, stream: bytes, backlog: _Backlog) -> None:
        """While publishes wait for room on ``stream``, have it checked, sooner again after each one let in."""
        loop = asyncio.get_running_loop()
        delay = _FIRST_POLL
        try:
            while backlog.waiters:
                backlog.checked.clear()
                waiting = len(backlog.waiters)
                self._checks_wanted.add(stream)
                self._send()
                await backlog.checked.wait()
                if not backlog.waiters:
                    return
                delay = _FIRST_POLL if len(backlog.waiters) < waiting else min(delay * 2, _MAX_POLL)
                # Not past the first waiter's deadline: it must get its answer on time.
                await asyncio.sleep(max(0.0, min(delay, backlog.waiters[0][1] - loop.time())))
        finally:
            backlog.poller = None

    def _checked(self, stream: bytes, reply: Any, now: float, sent: int) -> None:
        """Take in the reply of ``stream``'s check (run after ``sent`` of its XADDs went through)."""
        backlog = self._backlogs.get(stream)
        if backlog is None:
            return
        if isinstance(reply, Exception):
            backlog.sent += sent
            logger.debug("could not check the backlog of topic %r: %s", backlog.topic, reply)
        else:
            needed, length, dropped = (int(n) for n in reply)
            backlog.needed, backlog.length, backlog.sent, backlog.checked_at = needed, length, 0, now
            if dropped:
                self._count_drops(backlog.topic, dropped)
        limit = self.options.max_length
        while backlog.waiters and backlog.estimate() < limit:
            waiter, _ = backlog.waiters.popleft()
            if not waiter.done():
                backlog.admitted += 1
                waiter.set_result(None)
        # Deadlines follow arrival order, so those past theirs are at the front.
        while backlog.waiters and backlog.waiters[0][1] <= now:
            waiter, _ = backlog.waiters.popleft()
            _settle(waiter, self._full(backlog, reply if isinstance(reply, Exception) else None))
        backlog.checked.set()

    def _full(self, backlog: _Backlog, failure: Exception | None) -> Timeout:
        why = f"the check failed: {failure}" if failure is not None else f"{backlog.needed} held"
        return Timeout(
            f"publish to topic {backlog.topic!r} waited {self.options.overflow_timeout:g}s for room and was not"
            f" sent: its queue groups hold at most max_length={self.options.max_length} messages they have not"
            f" received or settled ({why}); consumers are behind (overflow='block', see MICRO_BROKER_OVERFLOW"
            " and MICRO_BROKER_OVERFLOW_TIMEOUT)"
        )

    def _count_drops(self, topic: str, dropped: int) -> None:
        """Count messages a trim dropped and log them, at once or ``_LOG_EVERY`` after the topic's last line."""
        self._dropped[topic] = self._dropped.get(topic, 0) + dropped
        self._untold[topic] = self._untold.get(topic, 0) + dropped
        if topic in self._tell_later:
            return
        loop = asyncio.get_running_loop()
        wait = self._told_at.get(topic, float("-inf")) + _LOG_EVERY - loop.time()
        if wait <= 0:
            self._tell(topic)
        else:
            self._tell_later[topic] = loop.call_later(wait, self._tell, topic)

    def _tell(self, topic: str) -> None:
        self._tell_later.pop(topic, None)
        count = self._untold.pop(topic, 0)
        if not count:
            return
        self._told_at[topic] = asyncio.get_running_loop().time()
        logger.warning(
            "topic %r: dropped %d message(s) no queue group had received yet (%d in all); its stream was trimmed"
            " to max_length=%d (overflow='trim'); consumers are behind, or MICRO_BROKER_OVERFLOW=block"
            " makes publishers wait for them",
            topic,
            count,
            self._dropped.get(topic, 0),
            self.options.max_length,
        )

    def _due(self, stream: bytes, now: float) -> bool:
        """Whether a pipeline publishing to ``stream`` should carry its check (see ``_CHECK_EVERY``)."""
        backlog = self._backlogs.get(stream)
        if backlog is None:
            return False
        grown = backlog.length + backlog.sent + backlog.admitted > self.options.max_length
        return grown or now - backlog.checked_at >= _CHECK_EVERY

    async def _send_publishes(self) -> None:
        """Send the queued publishes, each pipeline carrying all that queued while the previous one was out.

        After its XADDs, a pipeline carries the backlog check of each stream that is due one (see
        ``_due``) or whose publishers wait for room: the check costs no round trip of its own.
        """
        options = self.options
        loop = asyncio.get_running_loop()
        batch: list[_Publish] = []
        try:
            while self._outbox or self._checks_wanted:
                batch = []
                size = 0
                while self._outbox and (not batch or (len(batch) < _PIPELINE and size < _PIPELINE_BYTES)):
                    publish = self._outbox.popleft()
                    if not publish[2].done():
                        batch.append(publish)
                        size += len(publish[1][_BODY])
                    elif (backlog := self._backlogs.get(publish[0])) is not None:
                        backlog.admitted -= 1  # a publisher cancelled before its turn is not sent
                now = loop.time()
                checks = self._checks_wanted | {stream for stream, _, _ in batch if self._due(stream, now)}
                self._checks_wanted = set()
                if not batch and not checks:
                    continue
                try:
                    client = self._redis
                    if client is None:
                        raise ConnectionClosed("the redis broker is closed")
                    async with self._slots:
                        with translated(self._server.where):
                            pipe = client.pipeline(transaction=False)
                            for stream, fields, _ in batch:
                                # No MAXLEN: the check trims, knowing what the queue groups still need.
                                pipe.xadd(stream, fields)  # type: ignore[arg-type]
                            for stream in checks:
                                pipe.evalsha(_CHECK_SHA, 1, stream, options.max_length, options.overflow)
                            replies = await pipe.execute(raise_on_error=False)
                except Exception as exc:
                    replies = [exc] * (len(batch) + len(checks))
                sent: collections.Counter[bytes] = collections.Counter()
                for (stream, _, future), reply in zip(batch, replies, strict=False):
                    if (backlog := self._backlogs.get(stream)) is not None:
                        backlog.admitted -= 1
                    if not isinstance(reply, Exception):
                        sent[stream] += 1
                    if future.done():
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(self._error(reply))
                    else:
                        future.set_result(None)
                now = loop.time()
                unknown = False
                for stream, reply in zip(checks, replies[len(batch) :], strict=True):
                    unknown = unknown or (isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"))
                    self._checked(stream, reply, now, sent.pop(stream, 0))
                for stream, count in sent.items():
                    if (backlog := self._backlogs.get(stream)) is not None:
                        backlog.sent += count
                if unknown:  # the server lost its scripts (restarted, SCRIPT FLUSH): load it for the next check
                    with contextlib.suppress(MicroError):
                        await self._call(lambda client: client.script_load(_CHECK))
        finally:
            self._sender = None
            # Only if this task was cancelled: nobody is left to send these, so their publishers must not wait.
            for _, _, future in [*batch, *self._outbox]:
                if not future.done():
                    future.set_exception(
                        ConnectionClosed("the publish was interrupted; it may or may not have been sent")
                    )

    def _error(self, exc: Exception) -> Exception:
        """``exc`` as :func:`translated` would raise it."""
        try:
            with translated(self._server.where):
                raise exc
        except Exception as translated_exc:
            return translated_exc

    async def _subscribe(self, topic: str, handler: Handler, options: SubscribeOptions) -> Subscriber:
        client = self._client()
        stream = self._stream(topic)
        start_after = b"0-0"
        if options.queue is not None:
            await self._create_group(stream, options.queue)
        else:
            start_after = await self._last_id(client, stream)
        if not self._component_started():  # closed while we talked to Redis
            raise self._closed_error()
        subscriber = _RedisSubscriber(
            self,
            topic,
            options,
            handler,
            consumer=f"{self._id}:{next(self._serial)}",
            start_after=start_after,
        )
        task = subscriber._start()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return subscriber

    async def _last_id(self, client: Redis, stream: bytes) -> bytes:
        """The id of the newest entry of ``stream`` (``0-0`` if there is none): where a broadcast reader starts."""
        async with self._slots:
            with translated(self._server.where):
                try:
                    info = await client.xinfo_stream(stream)
                except ResponseError as exc:
                    if "no such key" in str(exc):
                        return b"0-0"
                    raise
        return bytes(info["last-generated-id"])
