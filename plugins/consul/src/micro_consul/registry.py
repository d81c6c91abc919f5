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
  registered node.
* **Watch.** Blocking queries (``index`` + ``wait``): one on the service's
  health for ``watch(name)``; for ``watch()``, one on the catalog's service
  names plus one per service. Changes are diffed into create/update/delete
  :class:`~micro.registry.Result` values. Several changes that land between
  two answers are reported as one.

A node registered through one agent must be deregistered through the same
agent (Consul's agent API); that is the case for a server and its registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import math
from typing import Any, ClassVar, Final

import consul.exceptions
from micro.errors import BackendUnavailable, BadRequest, MicroError, ServiceNotFound
from micro.registry import Node, Registry, Service, Watcher
from micro.registry.watch import MAX_PENDING, QueueWatcher, check_name, check_ttl, diff_views

from . import _tags
from ._client import Consul, dumps, wait_param
from .options import ConsulRegistryOptions

__all__ = ["ConsulRegistry", "deregister_after"]

logger = logging.getLogger("micro.registry.consul")

#: Services fetched at once by list_services() and the all-services watcher.
_PARALLEL: Final = 8

View = dict[str, Service]  # version -> service, live nodes only


def deregister_after(ttl: float) -> float:
    """Seconds a node stays critical before Consul deletes it: ``max(ttl, 1m) + 5s``, as Go Micro sets it.

    Consul reaps critical services no sooner than a minute anyway.
    """
    return max(float(ttl), 60.0) + 5.0


def _duration(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds * 1000))}ms"


def _view(name: str, entries: list[dict[str, Any]] | None) -> View:
    """The live versions of ``name`` in a ``/v1/health/service`` answer (already filtered to passing)."""
    versions: dict[str, list[tuple[int, dict[str, Any], Node]]] = {}
    for entry in entries or []:
        instance = entry.get("Service") or {}
        if instance.get("Service") != name:
            continue
        decoded = _tags.decode(instance.get("Tags") or [])
        host = instance.get("Address") or (entry.get("Node") or {}).get("Address") or ""
        metadata = decoded.get("node_metadata")
        if metadata is None:
            metadata = {str(k): str(v) for k, v in (instance.get("Meta") or {}).items()}
        node = Node(
            id=decoded.get("node_id") or str(instance.get("ID") or ""),
            address=_tags.join_address(host, int(instance.get("Port") or 0)),
            metadata=metadata,
        )
        modified = int(instance.get("ModifyIndex") or 0)
        versions.setdefault(decoded.get("version", ""), []).append((modified, decoded, node))
    view: View = {}
    for version, members in versions.items():
        _, latest, _ = max(members, key=lambda m: m[0])
        nodes = sorted((m[2] for m in members), key=lambda n: n.id)
        view[version] = Service(
            name=name,
            version=version,
            metadata=dict(latest.get("metadata", {})),
            endpoints=list(latest.get("endpoints", [])),
            nodes=nodes,
        )
    return view


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
        )
        #: Consul service ID -> digest of what was last registered for it (Go Micro's register shortcut).
        self._registered: dict[str, str] = {}
        self._watchers: set[_ConsulWatcher] = set()
        self._starting = asyncio.Lock()

    @property
    def address(self) -> str:
        """The Consul agent in use."""
        return self._consul.address

    async def start(self) -> None:
        """Find the first agent of ``address`` that answers. Idempotent.

        Raises :class:`~micro.errors.BackendUnavailable` naming the address and
        its variable if none does within ``timeout``.
        """
        async with self._starting:
            await self._consul.open()

    async def close(self) -> None:
        """Stop every watcher and release the connection (registered nodes stay). Idempotent."""
        for watcher in list(self._watchers):
            await watcher.stop()
        self._registered.clear()
        await self._consul.close()

    async def _open(self) -> Consul:
        if not self._consul.is_open:
            await self.start()
        return self._consul

    async def _settle_watchers(self) -> None:
        # A watcher's first read is its baseline: changes made here after watch() returned must come after it.
        pending = [w.ready.wait() for w in self._watchers if not w.ready.is_set()]
        if pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.timeout):
                    await asyncio.gather(*pending)

    # -- writes -------------------------------------------------------------------------------

    async def register(self, service: Service, *, ttl: float | None = None) -> None:
        """Register (or refresh) every node of ``service`` on the agent; see :meth:`micro.registry.Registry.register`.

        Raises :class:`~micro.errors.BadRequest` for a name containing ``/``
        (it cannot travel in Consul's URLs), as well as for the cases every
        registry rejects.
        """
        service.validate()
        if "/" in service.name:
            raise BadRequest(f"service name {service.name!r}: Consul service names cannot contain '/'")
        lifetime = check_ttl(ttl, self.options.ttl)
        client = await self._open()
        await self._settle_watchers()
        copy = service.copy()
        await asyncio.gather(*(self._register_node(client, copy, node, lifetime) for node in copy.nodes))

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

    async def deregister(self, service: Service) -> None:
        """Remove the nodes of ``service`` from the agent; nodes that are not registered are ignored."""
        name = check_name(service.name)
        client = await self._open()
        await self._settle_watchers()

        async def remove(node: Node) -> None:
            # The ID encodes name, version and node id: a node of another version or service is never touched.
            sid = _tags.service_id(name, service.version, node.id)
            self._registered.pop(sid, None)
            await client.call(f"deregistering {name!r} node {node.id!r}", lambda api: api.agent.service.deregister(sid))

        await asyncio.gather(*(remove(node) for node in service.nodes))

    # -- reads --------------------------------------------------------------------------------

    async def _health(
        self, client: Consul, name: str, *, index: str | None = None, wait: float = 0.0
    ) -> tuple[str, list[dict[str, Any]]]:
        if index is None:
            result = await client.call(f"looking up {name!r}", lambda api: api.health.service(name, passing=True))
        else:
            result = await client.call(
                f"watching {name!r}",
                lambda api: api.health.service(name, passing=True, index=index, wait=wait_param(wait)),
                wait=wait,
            )
        found_index, entries = result
        return str(found_index), list(entries or [])

    async def get_service(self, name: str) -> list[Service]:
        """Every version of ``name`` with passing nodes; :class:`~micro.errors.ServiceNotFound` if there is none."""
        check_name(name)
        client = await self._open()
        view: View = {}
        if "/" not in name:
            _, entries = await self._health(client, name)
            view = _view(name, entries)
        if not view:
            raise ServiceNotFound(f"service {name!r} not found", id="registry")
        return [view[version] for version in sorted(view)]

    async def _catalog(self, client: Consul, *, index: str | None = None, wait: float = 0.0) -> tuple[str, set[str]]:
        if index is None:
            result = await client.call("listing services", lambda api: api.catalog.services())
        else:
            result = await client.call(
                "watching the service list",
                lambda api: api.catalog.services(index=index, wait=wait_param(wait)),
                wait=wait,
            )
        found_index, names = result
        return str(found_index), set(names or {})

    async def _views(self, client: Consul, names: set[str]) -> dict[str, View]:
        limit = asyncio.Semaphore(_PARALLEL)

        async def one(name: str) -> tuple[str, View]:
            async with limit:
                _, entries = await self._health(client, name)
                return name, _view(name, entries)

        return dict(await asyncio.gather(*(one(n) for n in names if "/" not in n)))

    async def list_services(self) -> list[Service]:
        """One entry per (name, version) with passing nodes, sorted; nodes and endpoints are filled in."""
        client = await self._open()
        _, names = await self._catalog(client)
        views = await self._views(client, names)
        return [views[name][version] for name in sorted(views) for version in sorted(views[name])]

    def watch(self, service: str | None = None) -> Watcher:
        """A watcher fed by blocking queries; see the module docstring.

        Its first read is taken in the background: writes through this
        registry wait for it, so they are always reported. A change made
        elsewhere in the moment between ``watch()`` and that first read is
        part of the baseline instead of a result.
        """
        if service is not None:
            check_name(service)
        asyncio.get_running_loop()
        watcher = _ConsulWatcher(self, service)
        self._watchers.add(watcher)
        watcher._begin()
        return watcher


class _ConsulWatcher(QueueWatcher):
    def __init__(self, registry: ConsulRegistry, service: str | None) -> None:
        super().__init__(service, lambda _: registry._watchers.discard(self))
        self._registry = registry
        #: Set once the baseline is read (or the watcher failed).
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _begin(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"micro.registry.consul.watch:{self.service or '*'}")

    # -- feeding ------------------------------------------------------------------------------

    def overflow(self) -> BaseException:
        return BackendUnavailable(f"watcher fell more than {MAX_PENDING} results behind; read again")

    def _report(self, old: View, new: View) -> None:
        """Queue the results that turn ``old`` into ``new``."""
        for result in diff_views(old, new):
            self.push(result)

    async def _run(self) -> None:
        try:
            client = await self._registry._open()
            if self.service is not None:
                await self._follow(client, self.service, baseline=True, on_baseline=self.ready.set)
            else:
                await self._follow_all(client)
        except asyncio.CancelledError:
            raise
        except MicroError as exc:
            self.fail(exc)
        except Exception as exc:  # a bug must end the watcher visibly, not leave its reader waiting forever
            logger.exception("consul watcher failed")
            self.fail(BackendUnavailable(f"consul watcher failed: {exc!r}"))
        finally:
            self.ready.set()

    async def _retry(self, doing: str, attempt: Any) -> Any:
        """``await attempt()``, retried with backoff while the agent is unavailable, for up to ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._registry.options.timeout
        pause = 0.05
        while True:
            try:
                return await attempt()
            except BackendUnavailable:
                if loop.time() + pause >= deadline:
                    raise
                logger.debug("consul watcher: %s failed; retrying", doing)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def _follow(
        self,
        client: Consul,
        name: str,
        *,
        baseline: bool,
        on_baseline: Any = None,
        state: dict[str, View] | None = None,
    ) -> None:
        """Report the changes of ``name`` forever; ``state[name]`` (if given) holds the last view reported."""
        registry = self._registry
        wait = registry.options.watch_wait
        index, entries = await self._retry(f"reading {name!r}", lambda: registry._health(client, name))
        view = _view(name, entries)
        if not baseline:
            self._report({}, view)
        current = view
        if state is not None:
            state[name] = current
        if on_baseline is not None:
            on_baseline()
        while True:
            found, entries = await self._retry(
                f"watching {name!r}", functools.partial(registry._health, client, name, index=index, wait=wait)
            )
            # Consul's index can go backwards (a snapshot restore): start over from 0, as its docs say.
            index = found if _as_int(found) >= _as_int(index) else "0"
            view = _view(name, entries)
            self._report(current, view)
            current = view
            if state is not None:
                state[name] = current

    async def _follow_all(self, client: Consul) -> None:
        registry = self._registry
        wait = registry.options.watch_wait
        index, names = await self._retry("listing services", lambda: registry._catalog(client))
        state: dict[str, View] = {}
        followers: dict[str, asyncio.Task[None]] = {}
        try:
            baselines = []
            for name in sorted(names):
                read = asyncio.Event()
                baselines.append(read.wait())
                followers[name] = self._spawn(client, name, baseline=True, read=read, state=state)
            await asyncio.gather(*baselines)
            self.ready.set()
            while True:
                found, now = await self._retry(
                    "watching the service list", functools.partial(registry._catalog, client, index=index, wait=wait)
                )
                index = found if _as_int(found) >= _as_int(index) else "0"
                for name in sorted(now - followers.keys()):
                    # A name seen after the baseline: its current state is news, reported as created.
                    followers[name] = self._spawn(client, name, baseline=False, read=asyncio.Event(), state=state)
                for name in sorted(followers.keys() - now):
                    task = followers.pop(name)
                    task.cancel()
                    # asyncio.wait, not `await task`: a cancellation of this watcher must not be mistaken for it.
                    await asyncio.wait({task})
                    self._report(state.pop(name, {}), {})
        finally:
            for task in followers.values():
                task.cancel()
            await asyncio.gather(*followers.values(), return_exceptions=True)

    def _spawn(
        self, client: Consul, name: str, *, baseline: bool, read: asyncio.Event, state: dict[str, View]
    ) -> asyncio.Task[None]:
        """A task following ``name``; its failure fails the watcher, and ``read`` is set once it has read once."""

        async def follow() -> None:
            try:
                await self._follow(client, name, baseline=baseline, on_baseline=read.set, state=state)
            except asyncio.CancelledError:
                raise
            except MicroError as exc:
                self.fail(exc)
            except Exception as exc:
                logger.exception("consul watcher of %r failed", name)
                self.fail(BackendUnavailable(f"consul watcher of {name!r} failed: {exc!r}"))
            finally:
                read.set()

        return asyncio.create_task(follow(), name=f"micro.registry.consul.watch:{name}")

    # -- stopping -----------------------------------------------------------------------------

    async def stop(self) -> None:
        if self.stopped:
            return
        await super().stop()
        self.ready.set()
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait({task})


def _as_int(index: str | None) -> int:
    try:
        return int(index or 0)
    except ValueError:
        return 0
