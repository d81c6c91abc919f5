"""The lifecycle every building block shares, the one rule for use outside it, and how a block
gets the blocks it needs.

A component that needs other blocks (a client needs a transport and a
selector) takes them as keyword arguments. Those not given are built on first
use by ``make``, a :class:`Make` function handed in by whoever wires the
component (the plugin manager, for :class:`~micro.service.Service` and
``micro.create``); without one, by the plain constructor of the built-in
default. A component closes what it built itself, never what it was given.
So no block looks anything up in the process-wide plugin manager.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn, Protocol, Self, TypeVar

from .errors import ConnectionClosed, MicroError
from .options import Options

if TYPE_CHECKING:  # asyncio is imported on first start(): `micro --help` must not pay for it
    import asyncio

__all__ = ["Component", "Make", "Parts"]

C = TypeVar("C", bound="Component")


class Make(Protocol):
    """Builds a new, unstarted instance of an interface: ``make(Registry)`` is a :class:`~micro.registry.Registry`.

    The key is the interface's base class (its :attr:`Component.interface` names it). The wiring decides which
    implementation, and its options; ``options`` override them (a network gives its tunnel its own id). The
    caller owns, starts and closes what it gets.
    """

    def __call__(self, interface: Callable[..., C], /, **options: Any) -> C: ...


#: Where an instance is in its life: built, started, or closed (and restartable).
Lifecycle = Literal["new", "started", "closed"]


class Component:
    """Base of every interface: options in, I/O only after :meth:`start`.

    A factory builds the object without touching the network; ``await start()``
    (or ``async with``) connects, and ``await close()`` releases everything.
    Both are idempotent, and the object can be started again after a close
    unless the implementation says otherwise.

    **Hooks.** An implementation puts its I/O in :meth:`_start` and :meth:`_close`
    rather than overriding :meth:`start` and :meth:`close`: the base makes both
    idempotent, runs one :meth:`_start` at a time (concurrent ``start()`` calls
    connect once), and records the state that :meth:`_check_open` and
    :meth:`_open_for_use` enforce. Driver errors that escape a hook go through
    :meth:`_translate` (see :meth:`_fail`).

    **Use outside the lifecycle** (the one rule): an operation on an instance
    that was never started raises :class:`~micro.errors.ConnectionClosed`, unless
    the interface sets :attr:`starts_on_use` (the brokers, as Go Micro's
    ``Publish`` before ``Connect``), in which case the operation starts it first.
    After :meth:`close`, every operation raises
    :class:`~micro.errors.ConnectionClosed` until :meth:`start` is called again.
    The public methods of the bases that use hooks (store, sync, broker, transport,
    registry) apply the rule before calling a backend's hook, so a backend never checks it.
    """

    #: The interface this is a base of (``"registry"``): set once on each interface's base class, and the key
    #: ``micro.create(Registry)`` and :class:`Make` use.
    interface: ClassVar[str] = ""

    #: The options class this implementation is built from; a backend narrows it.
    options_type: ClassVar[type[Options]] = Options

    #: Whether an operation on a never-started instance starts it (``True``) or raises
    #: :class:`~micro.errors.ConnectionClosed` (``False``); see the class docstring.
    starts_on_use: ClassVar[bool] = False

    #: The name this implementation was selected by (set by the plugin manager).
    name: str = ""

    # Class-level defaults, so that a subclass that builds itself without Component.__init__
    # still reads as "new".
    _component_state: Lifecycle = "new"
    _component_start_lock: asyncio.Lock | None = None

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.options_type()

    async def start(self) -> None:
        """Connect or open what the implementation needs (its :meth:`_start`). Idempotent.

        Concurrent calls run :meth:`_start` once; if it raises, the instance stays
        as it was (not started) and a later call tries again. A :meth:`close` that
        is running finishes first.
        """
        if self._component_state == "started":
            return
        async with self._component_lock():
            # Another start() may have finished while this one waited for the lock.
            if not self._component_started():
                await self._start()
                self._component_state = "started"

    async def close(self) -> None:
        """Release connections, tasks and files (the implementation's :meth:`_close`). Idempotent.

        The instance refuses new operations from the moment ``close()`` is called,
        before :meth:`_close` runs. A :meth:`start` that is running finishes first.
        Closing an instance that is not started only marks it closed.
        """
        async with self._component_lock():
            if not self._component_started():
                self._component_state = "closed"
                return
            self._component_state = "closed"
            await self._close_steps()

    async def _close_steps(self) -> None:
        """What :meth:`close` does once the instance is marked closed: :meth:`_close`.

        An interface base extends it with what every backend of that block needs first
        (a broker ends its subscriptions before the backend's :meth:`_close`).
        """
        await self._close()

    def _component_lock(self) -> asyncio.Lock:
        if self._component_start_lock is None:
            import asyncio

            self._component_start_lock = asyncio.Lock()
        return self._component_start_lock

    def _component_started(self) -> bool:
        return self._component_state == "started"

    async def _start(self) -> None:
        """Hook: connect or open resources. Runs once per :meth:`start` of a stopped instance."""

    async def _close(self) -> None:
        """Hook: release what :meth:`_start` (and use since) acquired. Runs once per started instance."""

    def _check_open(self) -> None:
        """:class:`~micro.errors.ConnectionClosed` unless started; the rule for operations that do not start."""
        if self._component_state != "started":
            raise self._closed_error()

    async def _open_for_use(self) -> None:
        """Start a never-started instance if :attr:`starts_on_use`; otherwise as :meth:`_check_open`.

        Callers test ``_component_state`` first, so the hot path costs no await.
        """
        if self._component_state == "new" and self.starts_on_use:
            await self.start()
        self._check_open()

    def _translate(self, exc: Exception) -> MicroError | None:
        """Hook: the micro error for a driver exception a backend hook raised, or ``None`` to let it through.

        Called only for exceptions that are not already a :class:`~micro.errors.MicroError`.
        The default translates nothing; a backend maps its driver's errors here, once, rather
        than around every call (httpx ``map_httpcore_exceptions``).
        """
        return None

    def _fail(self, exc: Exception) -> NoReturn:
        """Re-raise ``exc`` from a hook: a micro error as it is, anything else through :meth:`_translate`."""
        if isinstance(exc, MicroError):
            raise exc
        translated = self._translate(exc)
        if translated is None:
            raise exc
        raise translated from exc

    def _closed_error(self) -> ConnectionClosed:
        what = type(self).__name__
        if self._component_state == "closed":
            return ConnectionClosed(f"the {what} is closed; start() it again to use it")
        return ConnectionClosed(f"the {what} is not started: await start() first, or use async with")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name or '?'}>"


class Parts:
    """The collaborators a component built for itself, because none was handed in.

    :param make: the wiring's :class:`Make`; ``None`` builds the built-in default given to :meth:`make`.

    What it builds it owns: :meth:`close` closes it, newest first. Never calls the plugin manager.
    """

    __slots__ = ("_make", "_owned")

    def __init__(self, make: Make | None = None) -> None:
        self._make = make
        self._owned: list[Component] = []

    def make(self, interface: Callable[..., C], default: Callable[..., C], /, **options: Any) -> C:
        """A new ``interface`` from the wiring, else ``default(**options)``; owned by this object."""
        part = self._make(interface, **options) if self._make is not None else default(**options)
        self._owned.append(part)
        return part

    def owns(self, part: object) -> bool:
        """Whether ``part`` was built here (and not closed since)."""
        return any(part is owned for owned in self._owned)

    async def close(self) -> list[Component]:
        """Close every part built here, newest first, ignoring their errors; returns them. Idempotent."""
        owned, self._owned = self._owned, []
        for part in reversed(owned):
            with contextlib.suppress(Exception):
                await part.close()
        return owned
