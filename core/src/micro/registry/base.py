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
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

from ..component import Component
from ..errors import BadRequest
from .options import RegistryOptions

__all__ = ["Action", "Endpoint", "Node", "Registry", "Result", "Service", "Value", "Watcher"]

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

    Every method is safe to call from several tasks at once. Implementations start
    themselves on first use if :meth:`start` was not awaited; after
    :meth:`close` they may be started again. Backend failures are raised as
    :class:`~micro.errors.BackendUnavailable`, never as a driver's own exception.
    """

    interface: ClassVar[str] = "registry"
    options_type: ClassVar[type[RegistryOptions]] = RegistryOptions
    options: RegistryOptions

    #: Optional behaviours this implementation supports: ``"ttl"`` (nodes expire), ``"watch"``.
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: RegistryOptions | None = None) -> None:
        super().__init__(options)

    @abc.abstractmethod
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
        :raises ~micro.errors.BadRequest: empty name, a node without id or
            address, a repeated node id, or a negative ttl.
        """

    @abc.abstractmethod
    async def deregister(self, service: Service) -> None:
        """Remove the nodes of ``service`` (matched by id) from its version.

        A version left without nodes disappears, and so does a service left
        without versions. Removing nodes that are not registered is not an error.

        :raises ~micro.errors.BadRequest: empty service name.
        """

    @abc.abstractmethod
    async def get_service(self, name: str) -> list[Service]:
        """Every registered version of ``name``, one :class:`Service` each, with its live nodes.

        Versions are sorted by version string; nodes by id.

        :raises ~micro.errors.ServiceNotFound: no live node of ``name`` is known
            (the message names the service).
        :raises ~micro.errors.BadRequest: empty name.
        """

    @abc.abstractmethod
    async def list_services(self) -> list[Service]:
        """One entry per ``(name, version)`` with live nodes, sorted by name then version.

        Entries carry name, version and metadata; whether ``nodes`` and
        ``endpoints`` are filled is up to the implementation (Go Micro leaves
        them out), so call :meth:`get_service` for those.
        """

    @abc.abstractmethod
    def watch(self, service: str | None = None) -> Watcher:
        """A :class:`Watcher` of changes to ``service`` (every service when ``None``).

        Synchronous so that no change made after it returns can be missed; it
        must be called with an event loop running. Changes made before it was
        called are not replayed: read the current state with
        :meth:`get_service` *after* creating the watcher.

        :raises ~micro.errors.NotSupported: without the ``"watch"`` capability.
        """
