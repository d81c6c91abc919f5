"""``consul``: a :class:`~micro.registry.Registry` on Consul's agent and health APIs (classic ``/v1``).

* **Register.** Each node becomes a service instance on the local agent
  (``/v1/agent/service/register``) named after the service, with its address
  and port, the Go Micro tags of :mod:`micro_consul._tags`, and node metadata
  also in ``Meta`` (the entries Consul accepts there). A node registered with a
  ttl gets a TTL check that passes at registration; Consul marks it critical
  when the ttl lapses and deletes the instance ``max(ttl, 1m) + 5s`` later
  (``DeregisterCriticalServiceAfter``, as Go Micro sets it). Registering an
  unchanged node again only passes its TTL check (Go Micro's hash shortcut),
  which is what a server's re-register loop does.
* **Read.** :meth:`~ConsulRegistry.get_service` reads ``/v1/health/service``
  with ``passing`` only, so expired and unhealthy nodes are never returned.
  A version's metadata and endpoints are those of its most recently
  registered node. :meth:`~ConsulRegistry.list_services` reads the whole
  catalog node by node (:meth:`~ConsulRegistry.catalog`), never service by
  service.
* **Watch.** Every watcher of a registry shares two blocking queries
  (``index`` + ``wait``), whatever the number of services: one on the
  services index, one on the checks index (:mod:`micro_consul._watch`).
  When either moves, the watched services are read again (``watch(name)``:
  those services; ``watch()``: the catalog) and the changes are diffed into
  create/update/delete :class:`~micro.registry.Result` values. Several
  changes that land between two reads are reported as one. The registry
  holds at most ``max_connections`` connections to the agent.

A node registered through one agent must be deregistered through the same
agent (Consul's agent API); that is the case for a server and its registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from typing import Any, ClassVar, Final

import consul.exceptions
from micro.errors import BadRequest, MicroError
from micro.registry import Node, Registry, Service, Watcher

from . import _tags
from ._catalog import Catalog, View, view
from ._client import Consul, dumps, wait_param
from ._watch import ConsulWatcher, Hub
from .options import ConsulRegistryOptions

__all__ = ["ConsulRegistry", "deregister_after"]

logger = logging.getLogger("micro.registry.consul")

#: Requests a catalog read or a watch round sends at once.
_PARALLEL: Final = 4
#: The checks that hide an instance from ``/v1/health/service?passing`` (a bexpr filter, Consul 1.4+).
_FAILING: Final = 'Status != "passing"'


def deregister_after(ttl: float) -> float:
    """Seconds a node stays critical before Consul deletes it: ``max(ttl, 1m) + 5s``, as Go Micro sets it.

    Consul reaps critical services no sooner than a minute anyway.
    """
    return max(float(ttl), 60.0) + 5.0


def _duration(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds * 1000))}ms"


class ConsulRegistry(Registry):
    """Service discovery through a Consul agent. See the module docstring."""

    options_type: ClassVar[type[ConsulRegistryOptions]] = ConsulRegistryOptions
    options: ConsulRegistryOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"ttl", "watch"})

    def __init__(self, options: ConsulRegistryOptions | None = None) -> None:
        super().__init__(options)
        self._consul = Consul(
            self.options.address,
            variable="MICRO_REGISTRY_ADDRESS",
            token=self.options.token,
            datacenter=self.options.datacenter,
            timeout=self.options.timeout,
            connections=self.options.max_connections,
        )
        #: Consul service ID -> digest of what was last registered for it (Go Micro's register shortcut).
        self._registered: dict[str, str] = {}
        #: What every watcher of this registry reads from, while there is one.
        self._hub: Hub | None = None
        #: Every watcher not stopped yet, including those of a hub that failed (their readers get the error).
        self._watchers: set[ConsulWatcher] = set()

    @property
    def address(self) -> str:
        """The Consul agent in use."""
        return self._consul.address

    async def _start(self) -> None:
        """Find the first agent of ``address`` that answers.

        Raises :class:`~micro.errors.BackendUnavailable` naming the address and
        its variable if none does within ``timeout``.
        """
        await self._consul.open()

    async def _close(self) -> None:
        """Stop every watcher and release the connection (registered nodes stay)."""
        for watcher in list(self._watchers):
            await watcher.stop()
        hub, self._hub = self._hub, None
        if hub is not None:
            await hub.close()
        self._registered.clear()
        await self._consul.close()

    async def _open(self) -> Consul:
        """The agent's client, once the registry is started (on first use; after close(): ConnectionClosed)."""
        if self._component_state != "started":
            await self._open_for_use()
        return self._consul

    def _detach(self, hub: Hub) -> None:
        """Forget ``hub`` (it stopped or failed): the next watch() makes a new one."""
        if self._hub is hub:
            self._hub = None

    async def _settle_watchers(self) -> None:
        # A watcher's first read is its baseline: changes made here after watch() returned must come after it.
        pending = [w.ready.wait() for w in self._watchers if not w.ready.is_set()]
        if pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.timeout):
                    await asyncio.gather(*pending)

    # -- writes -------------------------------------------------------------------------------

    def _check_service(self, service: Service) -> None:
        """:class:`~micro.errors.BadRequest` for a name containing ``/``: it cannot travel in Consul's URLs."""
        if "/" in service.name:
            raise BadRequest(f"service name {service.name!r}: Consul service names cannot contain '/'")

    async def _register(self, service: Service, ttl: float | None) -> None:
        """Register (or refresh) every node of ``service`` on the agent (see the module docstring)."""
        client = self._consul
        await self._settle_watchers()
        copy = service.copy()
        await asyncio.gather(*(self._register_node(client, copy, node, ttl) for node in copy.nodes))

    async def _register_node(self, client: Consul, service: Service, node: Node, lifetime: float | None) -> None:
        sid = _tags.service_id(service.name, service.version, node.id)
        host, port = _tags.split_address(node.address)
        check: dict[str, str] | None = None
        if lifetime is not None:
            check = {
                "CheckID": f"service:{sid}",
                "Name": f"micro ttl of {service.name}",
                "TTL": _duration(lifetime),
                "Status": "passing",
                "DeregisterCriticalServiceAfter": _duration(deregister_after(lifetime)),
            }
        tags = _tags.encode(service, node)
        meta = _tags.valid_meta(node.metadata)
        digest = hashlib.sha256(dumps([service.name, sid, host, port, tags, meta, check]).encode()).hexdigest()
        if self._registered.get(sid) == digest:
            if check is None:
                return
            try:
                await client.call(
                    f"passing the ttl check of {sid!r}", lambda api: api.agent.check.ttl_pass(f"service:{sid}")
                )
            except (MicroError, consul.exceptions.ConsulException):
                pass  # the agent lost it (restarted, or reaped a critical check): register it in full again
            else:
                return
        self._registered.pop(sid, None)
        await client.call(
            f"registering {service.name!r} node {node.id!r}",
            lambda api: api.agent.service.register(
                service.name,
                service_id=sid,
                address=host,
                port=port or None,
                tags=tags,
                meta=meta or None,
                check=check,
                replace_existing_checks=True,
            ),
        )
        self._registered[sid] = digest

    async def _deregister(self, service: Service) -> None:
        """Remove the nodes of ``service`` from the agent; nodes that are not registered are ignored."""
        name = service.name
        client = self._consul
        await self._settle_watchers()

        async def remove(node: Node) -> None:
            # The ID encodes name, version and node id: a node of another version or service is never touched.
            sid = _tags.service_id(name, service.version, node.id)
            self._registered.pop(sid, None)
            await client.call(f"deregistering {name!r} node {node.id!r}", lambda api: api.agent.service.deregister(sid))

        await asyncio.gather(*(remove(node) for node in service.nodes))

    # -- reads --------------------------------------------------------------------------------

    async def _health(self, client: Consul, name: str) -> tuple[str, list[dict[str, Any]]]:
        found_index, entries = await client.call(
            f"looking up {name!r}", lambda api: api.health.service(name, passing=True)
        )
        return str(found_index), list(entries or [])

    async def _get_service(self, name: str) -> list[Service]:
        """Every version of ``name`` with passing nodes: one request (``/v1/health/service/<name>?passing``)."""
        found = await self.read_view(self._consul, name)
        return [found[version] for version in sorted(found)]

    async def read_view(self, client: Consul, name: str) -> View:
        """The passing versions of ``name`` (``{}`` if none): one request."""
        if "/" in name:
            return {}
        _, entries = await self._health(client, name)
        return view(name, entries)

    async def _failing(self, client: Consul) -> tuple[str, set[tuple[str, str]]]:
        """The catalog's check index and the ``(node, service ID)`` of every check that is not passing."""
        found_index, checks = await client.call(
            "reading failing health checks", lambda api: api.health.state("any", filter_expr=_FAILING)
        )
        return str(found_index), {(str(c.get("Node") or ""), str(c.get("ServiceID") or "")) for c in checks or []}

    async def catalog(self) -> Catalog:
        """Every instance in the datacenter and whether it passes, without a request per service.

        ``/v1/catalog/nodes``, ``/v1/catalog/node/<node>`` per node (a few at a
        time), and the checks that are not passing, read before and after the
        nodes: if they changed in between, the nodes are read again (up to 3
        times), so an instance is not judged by checks older than it.
        """
        client = await self._open()
        index, failing = await self._failing(client)
        limit = asyncio.Semaphore(_PARALLEL)

        async def read(node: str) -> tuple[int, dict[str, Any] | None]:
            async with limit:
                found_index, found = await client.call(f"reading node {node!r}", lambda api: api.catalog.node(node))
                return _as_int(found_index), found if isinstance(found, dict) else None

        for _ in range(3):
            _, listed = await client.call("listing nodes", lambda api: api.catalog.nodes())
            names = sorted({str(n.get("Node") or "") for n in listed or []} - {""})
            nodes = await asyncio.gather(*(read(name) for name in names))
            again, failing = await self._failing(client)
            if again == index:
                break
            index = again
        # A node's answer carries the catalog's services (and nodes) index: the oldest of them is what all show.
        services_index = min((i for i, _ in nodes), default=0)
        return Catalog.build([n for _, n in nodes], failing, services_index, _as_int(index))

    async def _list_services(self) -> list[Service]:
        """One entry per (name, version) with passing nodes, sorted; nodes and endpoints are filled in.

        Reads :meth:`catalog`: a request per Consul node plus three, none per service.
        """
        catalog = await self.catalog()
        views = {name: view(name, entries) for name, entries in catalog.entries.items()}
        return [views[name][version] for name in sorted(views) for version in sorted(views[name])]

    # -- watch --------------------------------------------------------------------------------

    async def _index(self, client: Consul, what: str, index: str | None) -> str:
        """The index of ``what`` (``"services"`` or ``"checks"``); with ``index``, blocks until it moves on.

        Every service registration, change and removal moves Consul's services
        index, every check change its checks index; together they cover what
        ``/v1/health/service`` returns.
        """
        wait = self.options.watch_wait
        params: dict[str, Any] = {} if index is None else {"index": index, "wait": wait_param(wait)}
        if what == "services":
            doing = "watching the service list"
            found, _ = await client.call(doing, lambda api: api.catalog.services(**params), wait=wait)
        else:
            doing = "watching health checks"
            found, _ = await client.call(
                doing, lambda api: api.health.state("any", filter_expr=_FAILING, **params), wait=wait
            )
        return str(found)

    def _watch(self, service: str | None) -> Watcher:
        """A watcher fed by blocking queries the registry's watchers share; see the module docstring.

        Its first read is taken in the background: writes through this
        registry wait for it, so they are always reported. A change made
        elsewhere in the moment between ``watch()`` and that first read is
        part of the baseline instead of a result.
        """
        asyncio.get_running_loop()
        hub = self._hub
        if hub is None or hub.failed:
            hub = self._hub = Hub(self, everyone=self._watchers, detach=self._detach)
        return hub.watch(service)


def _as_int(index: Any) -> int:
    try:
        return int(index or 0)
    except (TypeError, ValueError):
        return 0
