"""The lifecycle every building block shares."""

from __future__ import annotations

from types import TracebackType
from typing import Any, ClassVar, Self

from .options import Options

__all__ = ["Component"]


class Component:
    """Base of every interface: options in, I/O only after :meth:`start`.

    A factory builds the object without touching the network; ``await start()``
    (or ``async with``) connects, and ``await close()`` releases everything.
    Both are idempotent, and the object can be started again after a close
    unless the implementation says otherwise.
    """

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
