"""The selector interface (Go Micro ``selector/selector.go``).

A selector turns a service name into nodes to call. The client asks once per
request::

    next = await selector.select("greeter", filters=[filter_version("v2")])
    for attempt in range(retries + 1):
        node = next()
        try:
            ...call node.address...
        except Exception as exc:
            selector.mark("greeter", node, exc)  # demotes the node for a while
            continue
        selector.mark("greeter", node, None)
        break

``select`` reads the registry (through a cache, in the built-in selectors);
``next()`` is synchronous and cheap, and sees marks made after ``select``
returned, so a retry skips the node that just failed.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol

from ..component import Component, Make, Parts
from ..registry.base import Node, Registry, Service
from .options import SelectorOptions

__all__ = ["Filter", "Next", "Selector", "Strategy"]


def _local() -> Registry:
    from ..registry.local import LocalRegistry

    return LocalRegistry()


#: Returns the node to call next. Raises :class:`~micro.errors.NoneAvailable` if there is none.
Next = Callable[[], Node]

#: Narrows the versions (and their nodes) a selection may use; must not mutate its argument.
Filter = Callable[[list[Service]], list[Service]]


class Strategy(Protocol):
    """Makes a :data:`Next` over a non-empty sequence of candidate nodes (``random``, ``round_robin``).

    The sequence must not be mutated. The returned callable is used from one
    event loop and may keep state (a round-robin position).
    """

    def __call__(self, nodes: Sequence[Node], /) -> Next: ...


class Selector(Component, abc.ABC):
    """Picks nodes of a service, remembering which ones failed.

    :param registry: where services are looked up. When omitted, the selector
        builds one on first use with ``make`` (see :class:`~micro.component.Make`), or
        the built-in ``local`` registry without it, and closes it in :meth:`close`;
        a registry passed in is never closed by the selector.
    """

    interface: ClassVar[str] = "selector"
    options_type: ClassVar[type[SelectorOptions]] = SelectorOptions
    options: SelectorOptions

    def __init__(
        self, options: SelectorOptions | None = None, *, registry: Registry | None = None, make: Make | None = None
    ) -> None:
        super().__init__(options)
        self._registry = registry
        self._parts = Parts(make)

    @property
    def registry(self) -> Registry:
        """The registry services are read from (built on first use if none was given)."""
        if self._registry is None:
            self._registry = self._parts.make(Registry, _local)
        return self._registry

    async def _close_parts(self) -> None:
        """Close the registry if the selector built it; the next use builds another."""
        if self._parts.owns(self._registry):
            self._registry = None
        await self._parts.close()

    @abc.abstractmethod
    async def select(
        self,
        service: str,
        *,
        filters: Sequence[Filter] = (),
        strategy: Strategy | None = None,
    ) -> Next:
        """A :data:`Next` over the nodes of ``service`` that pass every filter, in order.

        :param strategy: how to pick among the nodes; ``None`` uses the
            selector's own (random for ``random``, a round-robin shared by all
            selections of the service for ``roundrobin``).
        :raises ~micro.errors.ServiceNotFound: the registry does not know ``service``.
        :raises ~micro.errors.NoneAvailable: the service has no node left after filtering.
        :raises ~micro.errors.BadRequest: empty service name.
        :raises ~micro.errors.BackendUnavailable: the registry failed and nothing is cached.

        The returned ``Next`` skips nodes that are demoted (see :meth:`mark`).
        When every candidate is demoted it returns one of them anyway if
        ``options.fail_open`` (the default), else raises
        :class:`~micro.errors.NoneAvailable`.
        """

    @abc.abstractmethod
    def mark(self, service: str, node: Node, error: BaseException | None) -> None:
        """Record the outcome of a call to ``node`` of ``service``.

        ``error=None`` (success) restores the node if it was demoted. Any other
        error demotes it for ``options.cooldown`` seconds, except a
        :class:`~micro.errors.MicroError` with a 4xx code other than 408
        (:class:`~micro.errors.Timeout`): a bad request is the caller's fault,
        not the node's. Marks of unknown nodes are kept and apply if the node
        appears later. Never raises; synchronous, so it is safe in ``finally``.
        """

    def release(self, service: str, node: Node) -> None:
        """A call to ``node`` of ``service`` ended without an outcome to :meth:`mark` (it was cancelled).

        Selectors that count calls in flight (``leastconn``) stop counting it; the
        others ignore it. A caller that took a node from ``next()`` reports every call
        with exactly one of :meth:`mark` and :meth:`release`. Never raises.
        """

    @abc.abstractmethod
    def reset(self, service: str) -> None:
        """Forget every mark of ``service``: demoted nodes are used again immediately. Never raises."""
