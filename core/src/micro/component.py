"""The lifecycle every building block shares, and how a block gets the blocks it needs.

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
from typing import Any, ClassVar, Protocol, Self, TypeVar

from .options import Options

__all__ = ["Component", "Make", "Parts"]

C = TypeVar("C", bound="Component")


class Make(Protocol):
    """Builds a new, unstarted instance of an interface: ``make(Registry)`` is a :class:`~micro.registry.Registry`.

    The key is the interface's base class (its :attr:`Component.interface` names it). The wiring decides which
    implementation, and its options; ``options`` override them (a network gives its tunnel its own id). The
    caller owns, starts and closes what it gets.
    """

    def __call__(self, interface: Callable[..., C], /, **options: Any) -> C: ...


class Component:
    """Base of every interface: options in, I/O only after :meth:`start`.

    A factory builds the object without touching the network; ``await start()``
    (or ``async with``) connects, and ``await close()`` releases everything.
    Both are idempotent, and the object can be started again after a close
    unless the implementation says otherwise.
    """

    #: The interface this is a base of (``"registry"``): set once on each interface's base class, and the key
    #: ``micro.create(Registry)`` and :class:`Make` use.
    interface: ClassVar[str] = ""

    #: The options class this implementation is built from; a backend narrows it.
    options_type: ClassVar[type[Options]] = Options

    #: The name this implementation was selected by (set by the plugin manager).
    name: str = ""

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.options_type()

    async def start(self) -> None:
        """Connect or open what the implementation needs. The default does nothing."""

    async def close(self) -> None:
        """Release connections, tasks and files. The default does nothing."""

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
