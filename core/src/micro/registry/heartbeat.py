"""Keeping registrations alive: register, renew every interval with a ttl, deregister on close.

The one helper the server (its node) and the http broker (a node per subscription)
use, Go Micro's ``RegisterInterval``/``RegisterTTL`` loop written once:

* :meth:`Heartbeat.add` registers a service now (retrying ``attempts`` times with
  a doubling pause) and raises the registry's error if it cannot;
* one task renews every registration every ``interval`` seconds with ``ttl``, so
  a registry that lost them (restarted, expired them while unreachable) has them
  again within one interval; a failed renewal is logged and tried again next time;
* :meth:`Heartbeat.renew` re-registers one soon (its description changed);
* :meth:`Heartbeat.remove` deregisters one, :meth:`Heartbeat.close` stops the
  renewals first (so none lands after a deregistration) and deregisters them all.

Each registration is described by a function called at every (re-)registration,
so what is renewed is always the current description.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ..errors import MicroError
from .base import Registry, Service

__all__ = ["Heartbeat"]

logger = logging.getLogger("micro.registry.heartbeat")


class Heartbeat:
    """Registrations of ``registry`` kept alive. See the module docstring.

    :param registry: the registry, or a function returning it (read at every use).
    :param ttl: passed to every ``register``; ``None``: the registry's default (no expiry for most).
    :param interval: seconds between renewals; ``None`` or 0: register once, never renew.
    :param label: names the user in log lines.
    """

    def __init__(
        self,
        registry: Registry | Callable[[], Registry],
        *,
        ttl: float | None,
        interval: float | None,
        label: str = "registration",
    ) -> None:
        self._registry = registry
        self.ttl = ttl
        self.interval = interval
        self._label = label
        #: key -> the function describing what to register; insertion order is renewal order.
        self._services: dict[str, Callable[[], Service]] = {}
        self._registered: set[str] = set()
        self._loop: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def registry(self) -> Registry:
        registry = self._registry
        return registry if isinstance(registry, Registry) else registry()

    def __contains__(self, key: object) -> bool:
        return key in self._services

    @property
    def registered(self) -> frozenset[str]:
        """The keys whose last registration succeeded (and that were not removed since)."""
        return frozenset(self._registered)

    async def add(self, key: str, describe: Callable[[], Service], *, attempts: int = 1) -> None:
        """Register ``describe()`` now and keep it registered under ``key`` until removed.

        :param attempts: tries before giving up, with a pause of 0.1 s doubling between them.
        :raises MicroError: the registry's last error; nothing is kept then.
        """
        self._closing = False
        delay = 0.1
        for attempt in range(max(1, attempts)):
            try:
                await self.registry.register(describe(), ttl=self.ttl)
                break
            except MicroError as exc:
                if attempt >= attempts - 1:
                    raise
                logger.warning("%s: registration failed (%s); retrying", self._label, exc)
                await asyncio.sleep(delay)
                delay *= 2
        self._services[key] = describe
        self._registered.add(key)
        if self.interval and (self._loop is None or self._loop.done()):
            self._loop = asyncio.get_running_loop().create_task(self._renew_forever(), name=f"{self._label}:heartbeat")

    def renew(self, key: str) -> None:
        """Register ``key`` again soon, in the background (its description changed); errors are logged."""
        if self._closing or key not in self._services:
            return
        task = asyncio.get_running_loop().create_task(self._register_quietly(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def remove(self, key: str) -> None:
        """Stop renewing ``key`` and deregister it (a failure is logged: its ttl removes it eventually)."""
        describe = self._services.pop(key, None)
        if describe is None:
            return
        was_registered = key in self._registered
        self._registered.discard(key)
        if was_registered:
            try:
                await self.registry.deregister(describe())
            except MicroError as exc:
                logger.warning("%s: deregistration failed: %s", self._label, exc)

    async def close(self) -> None:
        """Stop renewing, then deregister everything. Idempotent; :meth:`add` may be used again after."""
        self._closing = True
        tasks = [t for t in (self._loop, *self._tasks) if t is not None and not t.done()]
        self._loop = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for key in list(self._services):
            await self.remove(key)

    async def _register_quietly(self, key: str) -> None:
        describe = self._services.get(key)
        if describe is None:
            return
        try:
            await self.registry.register(describe(), ttl=self.ttl)
        except MicroError as exc:
            logger.warning("%s: re-registration failed: %s", self._label, exc)
            return
        if key in self._services:  # not removed while registering
            self._registered.add(key)

    async def _renew_forever(self) -> None:
        assert self.interval
        while self._services:
            await asyncio.sleep(self.interval)
            for key in list(self._services):
                await self._register_quietly(key)
