"""The registry interface and its value types (Go Micro ``registry/registry.go``).

A registry maps a service name to the running instances (nodes) of each of its
versions. Servers :meth:`~Registry.register` themselves on start and
:meth:`~Registry.deregister` on stop; clients read it through a selector, which
caches what it reads and follows :meth:`~Registry.watch` for changes.

The value types serialise to the JSON Go Micro uses (lowercase keys), so a
service description can travel between the two.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

from ..component import Component
from ..errors import BadRequest, NotSupported, ServiceNotFound
from .options import RegistryOptions

__all__ = [
    "Action",
    "Endpoint",
    "Node",
    "Registry",
    "Result",
    "Service",
    "Value",
    "Watcher",
    "check_name",
    "check_ttl",
]

#: What happened to a service version, as reported by a :class:`Watcher`.
Action = Literal["create", "update", "delete"]

_ACTIONS: frozenset[str] = frozenset(("create", "update", "delete"))


def _metadata(data: Mapping[str, Any], what: str) -> dict[str, str]:
    raw = data.get("metadata") or {}
    if not isinstance(raw, Mapping):
        raise BadRequest(f"{what} metadata must be an object, not {type(raw).__name__}")
    return {str(k): str(v) for k, v in raw.items()}


def _object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise BadRequest(f"{what} must be an object, not {type(data).__name__}")
    return data


def _list(data: Mapping[str, Any], key: str, what: str) -> list[Any]:
    raw = data.get(key) or []
    if not isinstance(raw, list):
        raise BadRequest(f"{what} {key!r} must be a list, not {type(raw).__name__}")
    return raw


@dataclass(slots=True)
class Value:
    """A recursive description of a request or response type: a field ``name`` of ``type`` with sub-fields."""

    name: str
    type: str
    values: list[Value] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "values": [v.to_dict() for v in self.values]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Value:
        """The value in ``data``; raises :class:`~micro.errors.BadRequest` if it is malformed."""
        data = _object(data, "value")
        return cls(
            name=str(data.get("name") or ""),
            type=str(data.get("type") or ""),
            values=[Value.from_dict(v) for v in _list(data, "values", "value")],
        )


@dataclass(slots=True)
class Endpoint:
    """A handler or subscriber a service exposes (``"Greeter.Hello"``), with its request and response types."""

    name: str
    request: Value | None = None
    response: Value | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "request": self.request.to_dict() if self.request is not None else None,
            "response": self.response.to_dict() if self.response is not None else None,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Endpoint:
        """The endpoint in ``data``; raises :class:`~micro.errors.BadRequest` if it is malformed."""
        data = _object(data, "endpoint")
        request, response = data.get("request"), data.get("response")
        return cls(
            name=str(data.get("name") or ""),
            request=Value.from_dict(request) if request is not None else None,
            response=Value.from_dict(response) if response is not None else None,
            metadata=_metadata(data, "endpoint"),
        )


@dataclass(slots=True)
class Node:
    """One running instance of a service: a unique ``id`` and the ``address`` it serves on (``"host:port"``)."""

    id: str
    address: str
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "address": self.address, "metadata": dict(self.metadata)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Node:
        """The node in ``data``; raises :class:`~micro.errors.BadRequest` if it is malformed."""
        data = _object(data, "node")
        return cls(
            id=str(data.get("id") or ""),
            address=str(data.get("address") or ""),
            metadata=_metadata(data, "node"),
        )


@dataclass(slots=True)
class Service:
    """A service version and the nodes that run it.

    Registries return one ``Service`` per ``(name, version)``; their values are
    copies, so changing one never changes what the registry holds.
    """

    name: str
    version: str = "latest"
    metadata: dict[str, str] = field(default_factory=dict)
    endpoints: list[Endpoint] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The Go Micro JSON form: ``{"name", "version", "metadata", "endpoints", "nodes"}``."""
        return {
            "name": self.name,
            "version": self.version,
            "metadata": dict(self.metadata),
            "endpoints": [e.to_dict() for e in self.endpoints],
            "nodes": [n.to_dict() for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Service:
        """The service in ``data`` (missing keys take their defaults).

        Raises :class:`~micro.errors.BadRequest` if ``data`` or a part of it has the wrong shape.
        """
        data = _object(data, "service")
        return cls(
            name=str(data.get("name") or ""),
            version=str(data.get("version") or "latest"),
            metadata=_metadata(data, "service"),
            endpoints=[Endpoint.from_dict(e) for e in _list(data, "endpoints", "service")],
            nodes=[Node.from_dict(n) for n in _list(data, "nodes", "service")],
        )

    def copy(self) -> Service:
        """A deep copy."""
        return Service.from_dict(self.to_dict())

    def replace(self, **changes: Any) -> Service:
        """A shallow copy with ``changes`` applied (``service.replace(nodes=[])``)."""
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Raise :class:`~micro.errors.BadRequest` unless the service has a name and every node an id and address.

        Node ids must also be unique within the service.
        """
        if not isinstance(self.name, str) or not self.name.strip():
            raise BadRequest("service name must be a non-empty string")
        if not isinstance(self.version, str):
            raise BadRequest(f"service {self.name!r}: version must be a string")
        seen: set[str] = set()
        for node in self.nodes:
            if not isinstance(node, Node):
                raise BadRequest(f"service {self.name!r}: nodes must be Node objects, not {type(node).__name__}")
            if not node.id:
                raise BadRequest(f"service {self.name!r}: a node has no id")
            if not node.address:
                raise BadRequest(f"service {self.name!r}: node {node.id!r} has no address")
            if node.id in seen:
                raise BadRequest(f"service {self.name!r}: node id {node.id!r} appears twice")
            seen.add(node.id)


@dataclass(slots=True)
class Result:
    """One change seen by a :class:`Watcher`.

    ``service`` is always the *whole* state of one ``(name, version)``:

    * ``"create"``: the version appeared; ``service`` holds its nodes.
    * ``"update"``: its nodes, endpoints or metadata changed; ``service`` is the new state
      (it replaces what the reader held for that version).
    * ``"delete"``: the version disappeared (its last node was deregistered or
      expired); ``service`` is the last state seen, nodes included.

    So a reader keeps an exact copy by replacing on create/update and dropping on
    delete. (Go Micro's results carry only the changed nodes; this is a superset.)
    """

    action: Action
    service: Service

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            raise BadRequest(f"watch action must be create, update or delete, not {self.action!r}")


class Watcher(abc.ABC):
    """An async iterator of :class:`Result`, from :meth:`Registry.watch`.

    Changes made after ``watch()`` returned are delivered in the order the
    registry saw them. Iteration ends (``StopAsyncIteration``) once :meth:`stop`
    was called, including for a task already waiting in ``__anext__``; results
    not yet consumed at that point are dropped. A failure of the backend is
    raised from ``__anext__`` as :class:`~micro.errors.Unavailable` (or a
    subclass), after which the watcher is stopped.

    ``async with registry.watch() as watcher:`` stops it on exit.
    """

    def __aiter__(self) -> Self:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> Result:
        """The next change; waits until there is one."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop watching. Idempotent; never raises."""

    @property
    @abc.abstractmethod
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called or the watcher ended on an error."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class Registry(Component, abc.ABC):
    """Service discovery: who runs which version of a service, and where.

    Every method is safe to call from several tasks at once. Backend failures are
    raised as :class:`~micro.errors.BackendUnavailable`, never as a driver's own
    exception.

    The lifecycle is :class:`~micro.component.Component`'s one rule: a registry
    starts on first use (:attr:`starts_on_use`, as Go Micro's registries need no
    ``Connect``); after :meth:`close`, every method raises
    :class:`~micro.errors.ConnectionClosed` until :meth:`start` is called again.

    **Hooks.** The public methods are concrete: they check the arguments
    (:meth:`Service.validate`, :func:`check_name`, :func:`check_ttl`), refuse a
    ttl without the ``"ttl"`` capability and a watch without ``"watch"``, apply
    the lifecycle rule, raise :class:`~micro.errors.ServiceNotFound` for a
    service with no live node, and translate driver errors through
    :meth:`~micro.component.Component._translate`. A backend implements the
    protected hooks, which get checked arguments on a started registry:
    ``_register(service, ttl)``, ``_deregister(service)``, ``_get_service(name)``,
    ``_list_services()``, ``_watch(service)``, and ``_start``/``_close``; its own
    limits on what it can store go in ``_check_service(service)``.
    """

    interface: ClassVar[str] = "registry"
    options_type: ClassVar[type[RegistryOptions]] = RegistryOptions
    options: RegistryOptions

    #: Optional behaviours this implementation supports: ``"ttl"`` (nodes expire), ``"watch"``.
    capabilities: ClassVar[frozenset[str]] = frozenset()

    starts_on_use: ClassVar[bool] = True

    #: Whether :meth:`watch` made a watcher before the registry was ever started (see :meth:`close`).
    _watched_unstarted: bool = False

    def __init__(self, options: RegistryOptions | None = None) -> None:
        super().__init__(options)

    async def close(self) -> None:
        """Stop the watchers and release the backend (the :meth:`_close` hook). Idempotent.

        As :meth:`Component.close <micro.component.Component.close>`, and also for a registry that was
        never started but whose :meth:`watch` made watchers (the watch starts it in the background, and
        that start may have failed): :meth:`_close` runs then too, so those watchers stop.
        """
        if self._component_state == "new" and self._watched_unstarted:
            async with self._component_lock():
                if self._component_state == "new":
                    self._component_state = "closed"
                    self._watched_unstarted = False
                    await self._close()
                    return
        await super().close()

    # -- the public contract -------------------------------------------------------------------

    async def register(self, service: Service, *, ttl: float | None = None) -> None:
        """Add or refresh the nodes of ``service`` under ``(service.name, service.version)``.

        An upsert: nodes with a known id are replaced, other nodes of the version
        are kept. The version's metadata and endpoints become those of
        ``service``. Registering the same service again is how a server keeps
        its nodes alive.

        :param ttl: seconds after which these nodes vanish unless registered
            again; ``None`` takes ``options.ttl``, and ``0`` (or an
            ``options.ttl`` of ``None``) means they never expire. An implementation
            without the ``"ttl"`` capability raises
            :class:`~micro.errors.NotSupported` for a positive ttl.
        :raises ~micro.errors.BadRequest: not a :class:`Service`, empty name, a
            node without id or address, a repeated node id, or a negative ttl.
        """
        _require_service(service)
        service.validate()
        lifetime = check_ttl(ttl, self.options.ttl, supported="ttl" in self.capabilities)
        self._check_service(service)
        if self._component_state != "started":
            await self._open_for_use()
        try:
            await self._register(service, lifetime)
        except Exception as exc:
            self._fail(exc)

    async def deregister(self, service: Service) -> None:
        """Remove the nodes of ``service`` (matched by id) from its version.

        A version left without nodes disappears, and so does a service left
        without versions. Removing nodes that are not registered is not an error.

        :raises ~micro.errors.BadRequest: not a :class:`Service`, or an empty service name.
        """
        _require_service(service)
        check_name(service.name)
        if self._component_state != "started":
            await self._open_for_use()
        try:
            await self._deregister(service)
        except Exception as exc:
            self._fail(exc)

    async def get_service(self, name: str) -> list[Service]:
        """Every registered version of ``name``, one :class:`Service` each, with its live nodes.

        Versions are sorted by version string; nodes by id.

        :raises ~micro.errors.ServiceNotFound: no live node of ``name`` is known
            (the message names the service).
        :raises ~micro.errors.BadRequest: empty name.
        """
        check_name(name)
        if self._component_state != "started":
            await self._open_for_use()
        try:
            found = await self._get_service(name)
        except Exception as exc:
            self._fail(exc)
        if not found:
            raise ServiceNotFound(f"service {name!r} not found", id="registry")
        return found

    async def list_services(self) -> list[Service]:
        """One entry per ``(name, version)`` with live nodes, sorted by name then version.

        Entries carry name, version and metadata; whether ``nodes`` and
        ``endpoints`` are filled is up to the implementation (Go Micro leaves
        them out), so call :meth:`get_service` for those.
        """
        if self._component_state != "started":
            await self._open_for_use()
        try:
            return await self._list_services()
        except Exception as exc:
            self._fail(exc)

    def watch(self, service: str | None = None) -> Watcher:
        """A :class:`Watcher` of changes to ``service`` (every service when ``None``).

        Synchronous so that no change made after it returns can be missed; it
        must be called with an event loop running. Changes made before it was
        called are not replayed: read the current state with
        :meth:`get_service` *after* creating the watcher.

        On a registry never started, the watch starts it in the background (it
        cannot await): a failure to start is raised by the watcher, and changes
        made before the registry is up may be part of the watcher's baseline.

        :raises ~micro.errors.NotSupported: without the ``"watch"`` capability.
        :raises ~micro.errors.ConnectionClosed: after :meth:`close`, until :meth:`start`.
        """
        if service is not None:
            check_name(service)
        if "watch" not in self.capabilities:
            raise NotSupported(f"{type(self).__name__} cannot watch (no 'watch' capability)")
        if self._component_state == "started":
            return self._watch(service)
        if self._component_state == "closed":
            raise self._closed_error()
        import asyncio  # here, not at the top: `micro --help` imports this module and must not pay for asyncio

        starting = asyncio.get_running_loop().create_task(self._start_for_watch(), name=f"{type(self).__name__}.start")
        self._watched_unstarted = True
        try:
            watcher = self._watch(service)
        except BaseException:
            starting.add_done_callback(_consume)
            raise
        return _Starting(watcher, starting)

    async def _start_for_watch(self) -> None:
        """The background start of :meth:`watch`: as :meth:`start`, unless a :meth:`close` came first.

        A close() that ran while this waited must not be undone by it: the registry stays closed and
        the watcher (stopped by that close) ends.
        """
        async with self._component_lock():
            if self._component_state == "new":
                await self._start()
                self._component_state = "started"
        if self._component_state != "started":
            raise self._closed_error()

    # -- the hooks -----------------------------------------------------------------------------
    # Not abstract, so that a registry written before the hooks (overriding the public methods) still builds.

    def _check_service(self, service: Service) -> None:
        """Hook: this backend's own limits on what it can register (a name it cannot store).

        Runs in :meth:`register` after the common checks and before the registry
        starts, so bad input never opens a connection. Raises
        :class:`~micro.errors.BadRequest`; the default accepts everything.
        """

    async def _register(self, service: Service, ttl: float | None) -> None:
        """Hook of :meth:`register`: ``service`` validated, ``ttl`` the effective lifetime (``None``: forever)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _register nor register")

    async def _deregister(self, service: Service) -> None:
        """Hook of :meth:`deregister`: ``service.name`` checked; unknown nodes are not an error."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _deregister nor deregister")

    async def _get_service(self, name: str) -> list[Service]:
        """Hook of :meth:`get_service`: the live versions of ``name``, sorted; ``[]`` when there are none."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _get_service nor get_service")

    async def _list_services(self) -> list[Service]:
        """Hook of :meth:`list_services`: one entry per live ``(name, version)``, sorted."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _list_services nor list_services")

    def _watch(self, service: str | None) -> Watcher:
        """Hook of :meth:`watch`, on a registry with the ``"watch"`` capability that is not closed.

        ``service`` is checked. It may run before the registry is started (the
        base starts it in the background): a backend whose watch needs the
        connection awaits :meth:`~micro.component.Component._open_for_use` in the
        watcher's own task.
        """
        raise NotImplementedError(f"{type(self).__name__} implements neither _watch nor watch")


def check_name(name: object) -> str:
    """``name`` if it is a string with something besides whitespace, else :class:`~micro.errors.BadRequest`."""
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"service name must be a non-empty string, got {name!r}")
    return name


def check_ttl(ttl: float | None, default: float | None, *, supported: bool = True) -> float | None:
    """The effective ttl of a registration: ``ttl``, else ``default``; ``None`` (also for 0 or infinity) never expires.

    Raises :class:`~micro.errors.BadRequest` for a ttl that is not a non-negative number, and
    :class:`~micro.errors.NotSupported` for an expiring one when not ``supported``.
    """
    if ttl is None:
        ttl = default
    elif isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or math.isnan(ttl) or ttl < 0:
        raise BadRequest(f"ttl must be a non-negative number of seconds, got {ttl!r}")
    if not ttl or math.isinf(ttl):
        return None
    if not supported:
        raise NotSupported("this registry does not expire nodes (no 'ttl' capability)")
    return float(ttl)


def _require_service(service: object) -> None:
    if not isinstance(service, Service):
        raise BadRequest(f"expected a micro.registry.Service, not {type(service).__name__}")


def _consume(task: Any) -> None:
    if not task.cancelled():
        task.exception()


class _Starting(Watcher):
    """The watcher of a registry that :meth:`Registry.watch` started in the background.

    Its first ``__anext__`` waits for the start; if the start failed, it raises that
    error and the watcher is stopped, as for any failure of the backend.
    """

    def __init__(self, inner: Watcher, starting: Any) -> None:
        self._inner = inner
        self._starting: Any = starting
        starting.add_done_callback(_consume)

    @property
    def stopped(self) -> bool:
        return self._inner.stopped

    async def __anext__(self) -> Result:
        starting = self._starting
        if starting is not None and not self._inner.stopped:
            import asyncio

            try:
                await asyncio.shield(starting)  # a reader's cancel must not cancel the start
            except Exception:
                await self._inner.stop()
                raise
            self._starting = None
        return await self._inner.__anext__()

    async def stop(self) -> None:
        await self._inner.stop()

    def __getattr__(self, name: str) -> Any:
        # The backend's own attributes (``service``, a consul watcher's ``ready``) stay readable.
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)
