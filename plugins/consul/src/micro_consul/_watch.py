"""The watchers of one Consul registry, fed by two blocking queries whatever the number of services.

A :class:`Hub` belongs to a registry while it has watchers. It holds two
blocking queries (``index`` + ``wait``, Consul's long polls):

* ``/v1/catalog/services``: its index moves with every service registration,
  change or removal anywhere in the datacenter;
* ``/v1/health/state/any`` filtered to the checks that are not passing: its
  index moves with every check change.

Together they move whenever any ``/v1/health/service`` answer would change.
Each move wakes one *round*, which reads what the watchers need and diffs it
against the previous round:

* only ``watch(name)`` watchers, of up to :data:`NAMED` services: those
  services, one ``/v1/health/service`` request each (a few at a time);
* a ``watch()`` watcher, or more names: the whole catalog
  (:meth:`~micro_consul.registry.ConsulRegistry.catalog`, a request per
  Consul node). Only services whose instances or checks changed since the
  previous round are decoded again. When only the checks index moved, the
  failing checks are read again instead, and just the services whose failing
  checks changed are read, one by one (if there are more than :data:`NAMED`,
  as when a node's own check fails, the catalog is).

A round whose reads already include the latest index of both queries ends the
wake-up: the agent's registration of one node moves both, and one read answers
both.

Rounds run one at a time, changes that land during a round are read by the
next one, and a round is followed by a pause as long as itself (50 ms at
least), so a burst of changes costs at most half the process's time, and an
idle watch costs nothing but the two pending queries.

Consul's index rules (its "blocking queries" docs) are kept: an index that goes
backwards starts the query over without one, an index of 0 is sent as 1 (0 would
answer at once, forever), and an unchanged answer that came back at once is
followed by a short jittered pause. A request that fails is retried with
jittered exponential backoff; once the agent has been unavailable for
``timeout``, every watcher fails with :class:`~micro.errors.BackendUnavailable`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

from micro.errors import BackendUnavailable, MicroError
from micro.registry import Result
from micro.registry.watch import MAX_PENDING, QueueWatcher, diff_views

from ._catalog import Catalog, View, view

if TYPE_CHECKING:
    from ._client import Consul
    from .options import ConsulRegistryOptions

__all__ = ["NAMED", "Hub", "Source", "next_index"]

logger = logging.getLogger("micro.registry.consul")

T = TypeVar("T")

#: Up to this many services watched by name are read one by one; beyond it (or with a watch()), the catalog.
NAMED: Final = 16
#: Requests a round sends at once.
_PARALLEL: Final = 4
#: An unchanged blocking answer faster than this (seconds) is followed by a pause: Consul did not block.
_TOO_FAST: Final = 0.05
#: The least pause, in seconds, between two rounds: changes that come faster are read together.
_PAUSE: Final = 0.05
#: Bounds, in seconds, of the pause between retries of a failed request.
_BACKOFF: Final = (0.05, 2.0)


class Source(Protocol):
    """The reads a hub makes, through its registry (:class:`~micro_consul.registry.ConsulRegistry`).

    A protocol, so that this module needs nothing of the registry's: the registry imports the hub, not back.
    """

    options: ConsulRegistryOptions

    async def _open(self) -> Consul:
        """The agent's client, on a started registry."""
        ...

    async def _index(self, client: Consul, what: str, index: str | None) -> str:
        """The index of ``what`` (``"services"`` or ``"checks"``); with ``index``, blocks until it moves on."""
        ...

    async def _failing(self, client: Consul) -> tuple[str, set[tuple[str, str]]]:
        """The checks index and the ``(node, service ID)`` of every check that is not passing."""
        ...

    async def catalog(self) -> Catalog:
        """Every instance in the datacenter and whether it passes."""
        ...

    async def read_view(self, client: Consul, name: str) -> View:
        """The passing versions of ``name`` (``{}`` if none)."""
        ...


class Hub:
    """The blocking queries, the last state read and the watchers of one registry; see the module docstring.

    :param source: where it reads.
    :param everyone: the registry's set of live watchers: each watcher is in it until it stops (also
        after its hub failed, so that closing the registry stops it).
    :param detach: called with the hub once it stops or fails, so the registry makes a new one.
    """

    def __init__(self, source: Source, *, everyone: set[ConsulWatcher], detach: Callable[[Hub], None]) -> None:
        self._source = source
        self._everyone = everyone
        self._detach = detach
        self.watchers: set[ConsulWatcher] = set()
        #: Set once the hub ended on an error: the registry makes a new one for the next watch().
        self.failed = False
        self._wake = asyncio.Event()
        #: The latest index each blocking query returned, and the indexes the last catalog read included.
        self._latest = {"services": 0, "checks": 0}
        self._covered_index = {"services": 0, "checks": 0}
        #: Counts the times an index went backwards.
        self._resets = 0
        #: The services of the last round, by name (names with no passing node are absent).
        self._views: dict[str, View] = {}
        #: The names the last round read: ``None`` is every service.
        self._covered: set[str] | None = set()
        #: The last catalog read, while rounds read the catalog.
        self._catalog: Catalog | None = None
        #: The catalog signatures of the last round, if it read the catalog.
        self._signatures: dict[str, frozenset[tuple[str, str, str, int, bool]]] | None = None
        self._task = asyncio.create_task(self._run(), name="micro.registry.consul.watch")

    # -- watchers -----------------------------------------------------------------------------

    def watch(self, service: str | None) -> ConsulWatcher:
        """A new watcher; it joins (its baseline is read) in the next round."""
        watcher = ConsulWatcher(self, service)
        self.watchers.add(watcher)
        self._everyone.add(watcher)
        self._wake.set()
        return watcher

    async def remove(self, watcher: ConsulWatcher) -> None:
        """Forget a stopped watcher; the last one out stops the hub."""
        self.watchers.discard(watcher)
        if not self.watchers:
            await self._stop()

    async def close(self) -> None:
        """Stop every watcher, then the hub."""
        for watcher in list(self.watchers):
            await watcher.stop()
        await self._stop()

    async def _stop(self) -> None:
        self._detach(self)
        task = self._task
        if task is not asyncio.current_task() and not task.done():
            task.cancel()
            await asyncio.wait({task})

    def _fail(self, error: BaseException) -> None:
        self.failed = True
        self._detach(self)
        for watcher in list(self.watchers):
            watcher.fail(error)
            watcher.ready.set()

    # -- running ------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            client = await self._source._open()
            primed = [asyncio.Event(), asyncio.Event()]
            tasks = [
                asyncio.create_task(self._follow(client, "services", primed[0])),
                asyncio.create_task(self._follow(client, "checks", primed[1])),
                asyncio.create_task(self._rounds(client, primed)),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                task.result()  # raises the failure that ended it
        except asyncio.CancelledError:
            raise
        except MicroError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must end the watchers visibly, not leave their readers waiting forever
            logger.exception("consul watcher failed")
            self._fail(BackendUnavailable(f"consul watcher failed: {exc!r}"))

    async def _retry(self, doing: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``await attempt()``, retried with jittered backoff while the agent is unavailable, for up to ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        pause = _BACKOFF[0]
        while True:
            try:
                return await attempt()
            except BackendUnavailable:
                now = loop.time()
                if deadline is None:
                    deadline = now + self._source.options.timeout
                if now + pause >= deadline:
                    raise
                logger.debug("consul watcher: %s failed; retrying", doing)
                # Jitter: the watchers of many processes that lost the agent together do not come back together.
                await asyncio.sleep(pause * random.uniform(0.5, 1.0))
                pause = min(pause * 2, _BACKOFF[1])

    async def _follow(self, client: Consul, what: str, primed: asyncio.Event) -> None:
        """Block on the ``what`` index forever, waking a round whenever it moves."""
        source = self._source
        loop = asyncio.get_running_loop()
        index: int | None = None
        while True:
            started = loop.time()
            read = functools.partial(source._index, client, what, None if index is None else str(index))
            found = _as_int(await self._retry(f"watching {what}", read))
            went_back = index is not None and found < index
            index, moved = next_index(index, found)
            if went_back:
                # A new era of indexes: what earlier rounds covered says nothing about the next answers.
                self._resets += 1
            if not primed.is_set():
                primed.set()
            elif moved:
                self._latest[what] = found
                self._wake.set()
            elif loop.time() - started < _TOO_FAST:
                await asyncio.sleep(random.uniform(_TOO_FAST, 2 * _TOO_FAST))

    async def _rounds(self, client: Consul, primed: list[asyncio.Event]) -> None:
        # The indexes are read before the first round: nothing that changes after it is missed.
        for event in primed:
            await event.wait()
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            started = loop.time()
            resets = self._resets
            await self._round(client)
            # Both queries answer the same change (a registration moves both indexes): once the round's reads
            # included it, the second answer needs no round of its own. A watcher that came during the round
            # still waits for one, to join.
            if (
                resets == self._resets
                and all(self._latest[k] <= self._covered_index[k] for k in self._latest)
                and all(w.joined or w.stopped for w in self.watchers)
            ):
                self._wake.clear()
            # At most half of the time on rounds, however fast changes come (they are read together).
            await asyncio.sleep(max(loop.time() - started, _PAUSE))

    async def _round(self, client: Consul) -> None:
        """Read what the watchers need, report the differences to those that joined, and let new ones join."""
        watchers = [w for w in self.watchers if not w.stopped]
        every = any(w.service is None for w in watchers)
        names = {w.service for w in watchers if w.service is not None}
        covered = self._covered
        if every or len(names) > NAMED:
            wanted = None if every else names
            fresh = None
            if self._catalog is not None and covered == wanted and all(w.joined for w in watchers):
                fresh = await self._recheck(client, wanted)
            if fresh is None:
                catalog = await self._retry("reading the catalog", self._source.catalog)
                fresh = self._changed(catalog, wanted)
                self._catalog, self._signatures = catalog, catalog.signatures
                self._covered_index = {"services": catalog.services_index, "checks": catalog.checks_index}
        else:
            fresh = await self._read(client, names)
            self._catalog = self._signatures = None
            self._covered_index = {"services": 0, "checks": 0}  # per-service indexes say nothing of the tables
        results: list[Result] = []
        for name in sorted(fresh):
            new = fresh[name]
            if covered is None or name in covered:  # else there is no earlier state to compare with
                results += diff_views(self._views.get(name, {}), new)
            if new:
                self._views[name] = new
            else:
                self._views.pop(name, None)
        self._covered = None if every else names
        if not every:
            for name in self._views.keys() - names:
                del self._views[name]
        for watcher in watchers:
            if watcher.joined:
                for result in results:
                    watcher.push(result)
            else:
                watcher.joined = True
                watcher.ready.set()

    async def _recheck(self, client: Consul, names: set[str] | None) -> dict[str, View] | None:
        """When only checks moved since the last catalog read: the views of the services whose checks changed.

        The checks that are not passing are read again and compared with those
        of the last catalog read; the services they belong to are read one by
        one. ``None`` (read the catalog instead) when services moved too, or
        more than :data:`NAMED` services are concerned (a node's own check).
        """
        last = self._catalog
        if last is None or self._latest["services"] > self._covered_index["services"]:
            return None
        source = self._source
        index, failing = await self._retry("reading failing checks", lambda: source._failing(client))
        concerned: set[str] = set()
        for node, sid in last.failing ^ failing:
            if not sid:
                concerned |= last.on_node.get(node, set())
            elif (name := last.owners.get((node, sid))) is not None:
                concerned.add(name)
            # else: an instance newer than the catalog read; the services index moved, the next round reads it
        if names is not None:
            concerned &= names
        if len(concerned) > NAMED or self._latest["services"] > self._covered_index["services"]:
            return None
        fresh = await self._read(client, concerned)
        last.failing = failing
        self._covered_index["checks"] = _as_int(index)
        if self._signatures is not None:
            for name in concerned:
                self._signatures.pop(name, None)  # their passing flags are stale: the next catalog read decodes them
        return fresh

    def _changed(self, catalog: Catalog, names: set[str] | None) -> dict[str, View]:
        """The views of the ``names`` (``None``: every service) whose signature moved since the last round."""
        old = self._signatures
        covered = self._covered
        wanted = catalog.signatures.keys() | self._views.keys() if names is None else names
        fresh: dict[str, View] = {}
        for name in wanted:
            signature = catalog.signatures.get(name)
            known = old is not None and name in old and (covered is None or name in covered)
            if known and old is not None and old[name] == signature:
                continue
            fresh[name] = view(name, catalog.entries.get(name))
        return fresh

    async def _read(self, client: Consul, names: set[str]) -> dict[str, View]:
        limit = asyncio.Semaphore(_PARALLEL)
        source = self._source

        async def one(name: str) -> tuple[str, View]:
            async with limit:
                return name, await self._retry(f"reading {name!r}", lambda: source.read_view(client, name))

        return dict(await asyncio.gather(*(one(name) for name in names)))


class ConsulWatcher(QueueWatcher):
    """One reader's queue of results; its hub fills it."""

    def __init__(self, hub: Hub, service: str | None) -> None:
        # Stopped, it leaves its registry's list (the hub's list it leaves in stop(), which can wait).
        super().__init__(service, lambda _: hub._everyone.discard(self))
        self._hub = hub
        #: Set once the watcher's baseline is read (or it failed or stopped).
        self.ready = asyncio.Event()
        #: Whether the watcher has its baseline, so results are pushed to it.
        self.joined = False

    def overflow(self) -> BaseException:
        return BackendUnavailable(f"watcher fell more than {MAX_PENDING} results behind; read again")

    async def stop(self) -> None:
        if self.stopped:
            return
        await super().stop()
        self.ready.set()
        await self._hub.remove(self)


def next_index(previous: int | None, found: int) -> tuple[int | None, bool]:
    """Consul's rules for a blocking query that sent ``previous`` (``None``: none) and was answered ``found``.

    Returns the index to send next (``None``: none, a plain read) and whether
    the answer may carry a change. An index that went backwards (a snapshot
    restore, a new leader's state) means reading afresh; an index of 0 is sent
    as 1, since 0 makes every query answer at once.
    """
    if previous is None:
        return max(found, 1), True
    if found < previous:
        return None, True
    return max(found, 1), found != previous


def _as_int(index: str | None) -> int:
    try:
        return int(index or 0)
    except ValueError:
        return 0
