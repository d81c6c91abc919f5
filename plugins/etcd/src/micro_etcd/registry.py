"""``etcd``: a :class:`~micro.registry.Registry` on etcd's keys, leases and watch (v3 API, through its gateway).

* **Layout.** Each node is one key, ``<prefix><name>/<version>/<node id>``
  (each part percent-encoded, so a ``/`` in a name stays inside its part),
  holding the Go Micro JSON of its service with that one node (as Go Micro's
  etcd registry stores it).
* **TTL.** A node registered with a ttl is attached to a lease of its own,
  granted for the ttl in whole seconds, rounded up. etcd deletes the key when
  the lease lapses; it grants no lease shorter than its minimum (2 s with the
  default election timeout) and checks for lapsed leases every 500 ms, so an
  unrefreshed node disappears between ``ttl`` and ``max(ceil(ttl), 2 s) + 0.5 s``
  after its last registration. Registering an unchanged node again with the
  same ttl only renews its lease (a keep-alive, and a transaction that checks
  the key is still on that lease: no write, nothing for watchers); a changed
  node or ttl is written with a new lease and the old one is revoked. A node
  whose lease lapsed, or whose key was deleted elsewhere, is written again.
* **Read.** :meth:`~EtcdRegistry.get_service` is one range read of the
  service's folder; a version's metadata and endpoints are those of its most
  recently written node. :meth:`~EtcdRegistry.list_services` reads the whole
  folder once.
* **Watch.** Each watcher reads its folder (one service's, or all), then
  follows etcd's watch stream from the revision after that read, so no change
  between the two is lost. Events are applied to its copy and the affected
  versions diffed into create/update/delete results. If the stream ends or
  etcd compacted the revision away, the watcher reads the folder again, reports
  the difference and watches on; if etcd cannot be reached, the watcher fails
  with :class:`~micro.errors.BackendUnavailable`.

Writes through this registry wait (within ``timeout``) for the first read of
watchers created before them, so a watcher always reports them; a change made
elsewhere in the moment between ``watch()`` and that first read belongs to its
baseline instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import urllib.parse
from collections.abc import AsyncIterator, Iterable
from typing import Any, ClassVar, Final

from micro.errors import BackendUnavailable, MicroError
from micro.registry import Node, Registry, Service, Watcher
from micro.registry.watch import QueueWatcher, diff_views

from ._client import Etcd, KeyValue, b64, prefix_end
from .options import EtcdRegistryOptions

__all__ = ["EtcdRegistry", "lease_seconds"]

logger = logging.getLogger("micro.registry.etcd")

#: Seconds a watcher waits before reading again after its stream ended without an error.
_REOPEN_PAUSE: Final = 0.1

#: ``(name, version) -> Service``: the live nodes of a folder, as a watcher diffs them.
View = dict[tuple[str, str], Service]


def lease_seconds(ttl: float) -> int:
    """The lease a node registered with ``ttl`` gets: whole seconds, rounded up (etcd raises it to its minimum)."""
    return max(1, math.ceil(ttl))


def _part(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _decode(kv: KeyValue) -> Service | None:
    """The one-node service a key holds, or ``None`` (logged) for a value micro did not write."""
    try:
        service = Service.from_dict(json.loads(kv.value))
    except (ValueError, MicroError):
        logger.warning("ignoring key %r: not a registered micro node", kv.key[:200])
        return None
    if len(service.nodes) != 1 or not service.name:
        logger.warning("ignoring key %r: not a registered micro node", kv.key[:200])
        return None
    return service


def _view(entries: Iterable[tuple[Service, int]]) -> View:
    """Group one-node services into one :class:`Service` per version; the newest write gives metadata/endpoints."""
    newest: dict[tuple[str, str], tuple[int, Service]] = {}
    nodes: dict[tuple[str, str], dict[str, Node]] = {}
    for service, revision in entries:
        key = (service.name, service.version)
        nodes.setdefault(key, {})[service.nodes[0].id] = service.nodes[0]
        if key not in newest or revision > newest[key][0]:
            newest[key] = (revision, service)
    return {
        key: Service(
            name=key[0],
            version=key[1],
            metadata=dict(newest[key][1].metadata),
            endpoints=list(newest[key][1].endpoints),
            nodes=[nodes[key][i] for i in sorted(nodes[key])],
        )
        for key in newest
    }


class _Lease:
    """What this registry last wrote for a node key: the lease, its seconds, and the value."""

    __slots__ = ("id", "seconds", "value")

    def __init__(self, id: int, seconds: int | None, value: str) -> None:
        self.id, self.seconds, self.value = id, seconds, value


class EtcdWatcher(QueueWatcher):
    """A watcher fed by its own task: a first read of its folder, then etcd's watch stream; see the module."""

    def __init__(self, registry: EtcdRegistry, service: str | None) -> None:
        super().__init__(service, registry._forget)
        self.ready = asyncio.Event()
        self._registry = registry
        self._task = asyncio.get_running_loop().create_task(self._follow(), name=f"etcd watch {service or '*'}")

    async def stop(self) -> None:
        await super().stop()
        self.ready.set()
        if self._task is not asyncio.current_task():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _follow(self) -> None:
        registry = self._registry
        folder = registry.options.prefix + ("" if self.service is None else _part(self.service) + "/")
        end = prefix_end(folder)
        state: dict[bytes, tuple[Service, int]] = {}
        view: View | None = None  # None until the first read, which is the baseline: not reported
        try:
            client = await registry._client()
            while not self.stopped:
                revision, kvs = await client.range(folder, end, "reading the registry for a watcher")
                state = {kv.key: (s, kv.mod_revision) for kv in kvs if (s := _decode(kv)) is not None}
                fresh = _view(state.values())
                view = fresh if view is None else self._publish(view, fresh)
                self.ready.set()
                async with client.watch(folder, end, revision + 1, "watching the registry") as results:
                    async for result in results:
                        if result.get("canceled") or result.get("compact_revision"):
                            break  # compacted past our revision, or cancelled by the server: read again
                        events = result.get("events") or []
                        for event in events:
                            kv = KeyValue.of(event.get("kv"))
                            if event.get("type") == "DELETE":
                                state.pop(kv.key, None)
                            elif (service := _decode(kv)) is not None:
                                state[kv.key] = (service, kv.mod_revision)
                        if events:
                            view = self._publish(view, _view(state.values()))
                await asyncio.sleep(_REOPEN_PAUSE)
        except asyncio.CancelledError:
            raise
        except MicroError as exc:
            self.fail(exc if isinstance(exc, BackendUnavailable) else BackendUnavailable(str(exc)))
        except Exception as exc:  # a bug must end the watcher visibly, not kill its task silently
            logger.exception("etcd registry watcher failed")
            self.fail(BackendUnavailable(f"watching the registry failed: {exc!r}"))
        finally:
            self.ready.set()

    def _publish(self, old: View, new: View) -> View:
        for result in diff_views(old, new):
            self.push(result)
        return new


class EtcdRegistry(Registry):
    """Service discovery through etcd. See the module docstring."""

    options_type: ClassVar[type[EtcdRegistryOptions]] = EtcdRegistryOptions
    options: EtcdRegistryOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"ttl", "watch"})

    def __init__(self, options: EtcdRegistryOptions | None = None) -> None:
        super().__init__(options)
        self._etcd = Etcd(
            self.options.address,
            variable="MICRO_REGISTRY_ADDRESS",
            timeout=self.options.timeout,
            connections=self.options.max_connections,
        )
        #: Node key -> what this instance last wrote there (the re-register shortcut, and the lease to revoke).
        self._written: dict[str, _Lease] = {}
        self._watchers: set[EtcdWatcher] = set()
        #: Node key -> [its lock, how many calls use it]: writes of one node run one at a time, or two racing
        #: registrations could leave the key on one lease while ``_written`` records (and renews) the other.
        self._node_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def _exclusive(self, key: str) -> AsyncIterator[None]:
        lock, users = self._node_locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._node_locks[key]

    @property
    def address(self) -> str:
        """The etcd server in use."""
        return self._etcd.address

    async def _start(self) -> None:
        """Find the first server of ``address`` that answers.

        Raises :class:`~micro.errors.BackendUnavailable` naming the address and
        its variable if none does within ``timeout``.
        """
        await self._etcd.open()

    async def _close(self) -> None:
        """Stop every watcher and release the connection (registered nodes stay until their leases lapse)."""
        for watcher in list(self._watchers):
            await watcher.stop()
        self._written.clear()
        await self._etcd.close()

    async def _client(self) -> Etcd:
        """The server's client, once the registry is started (on first use; after close(): ConnectionClosed)."""
        if self._component_state != "started":
            await self._open_for_use()
        return self._etcd

    def _forget(self, watcher: QueueWatcher) -> None:
        self._watchers.discard(watcher)

    def _key(self, name: str, version: str, node: str) -> str:
        return f"{self.options.prefix}{_part(name)}/{_part(version)}/{_part(node)}"

    async def _settle_watchers(self) -> None:
        # A watcher's first read is its baseline: changes made here after watch() returned must come after it.
        pending = [w.ready.wait() for w in self._watchers if not w.ready.is_set()]
        if pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.timeout):
                    await asyncio.gather(*pending)

    # -- writes -------------------------------------------------------------------------------

    async def _register(self, service: Service, ttl: float | None) -> None:
        """Write (or refresh) every node of ``service``; see :meth:`micro.registry.Registry.register`."""
        client = self._etcd
        await self._settle_watchers()
        seconds = None if ttl is None else lease_seconds(ttl)
        copy = service.copy()
        await asyncio.gather(*(self._register_node(client, copy, node, seconds) for node in copy.nodes))

    async def _register_node(self, client: Etcd, service: Service, node: Node, seconds: int | None) -> None:
        key = self._key(service.name, service.version, node.id)
        value = _dumps(service.replace(nodes=[node]).to_dict())
        doing = f"registering {service.name!r} node {node.id!r}"
        async with self._exclusive(key):
            await self._write_node(client, key, value, seconds, doing)

    async def _write_node(self, client: Etcd, key: str, value: str, seconds: int | None, doing: str) -> None:
        written = self._written.pop(key, None)  # put back only once the key is known to hold it
        unchanged = written is not None and (written.value, written.seconds) == (value, seconds)
        if written is not None and unchanged and written.id and await self._renew(client, key, written.id, doing):
            self._written[key] = written
            return  # unchanged and renewed: nothing for watchers to see
        lease = 0 if seconds is None else await client.grant(seconds, doing)
        try:
            await client.put(key, value, doing, lease=lease)
        except BaseException:
            if lease:
                with contextlib.suppress(MicroError):
                    await client.revoke(lease, doing)
            raise
        self._written[key] = _Lease(lease, seconds, value)
        if written is not None and written.id and written.id != lease:
            # The key moved to the new lease (or to none): the old one holds nothing now.
            await client.revoke(written.id, doing)

    @staticmethod
    async def _renew(client: Etcd, key: str, lease: int, doing: str) -> bool:
        """Renew ``lease`` and check ``key`` is still on it (it may have been deleted behind this registry's back)."""
        on_lease = {"key": b64(key), "target": "LEASE", "result": "EQUAL", "lease": str(lease)}
        ttl, (still_there, _) = await asyncio.gather(
            client.keepalive(lease, doing), client.txn([on_lease], [], [], doing)
        )
        return ttl > 0 and bool(still_there)

    async def _deregister(self, service: Service) -> None:
        """Delete the nodes of ``service``; nodes that are not registered are ignored."""
        name = service.name
        client = self._etcd
        await self._settle_watchers()

        async def remove(node: Node) -> None:
            key = self._key(name, service.version, node.id)
            doing = f"deregistering {name!r} node {node.id!r}"
            async with self._exclusive(key):
                written = self._written.pop(key, None)
                await client.delete(key, None, doing)
                if written is not None and written.id:
                    await client.revoke(written.id, doing)

        await asyncio.gather(*(remove(node) for node in service.nodes))

    # -- reads --------------------------------------------------------------------------------

    async def _read(self, folder: str, doing: str) -> View:
        _, kvs = await self._etcd.range(folder, prefix_end(folder), doing)
        return _view((s, kv.mod_revision) for kv in kvs if (s := _decode(kv)) is not None)

    async def _get_service(self, name: str) -> list[Service]:
        """Every version of ``name`` with live nodes: one range read of the service's folder."""
        found = await self._read(f"{self.options.prefix}{_part(name)}/", f"looking up {name!r}")
        return [found[key] for key in sorted(found)]

    async def _list_services(self) -> list[Service]:
        """One entry per (name, version) with live nodes, sorted; nodes and endpoints are filled in.

        One range read of the whole registry folder.
        """
        found = await self._read(self.options.prefix, "listing services")
        return [found[key] for key in sorted(found)]

    # -- watch --------------------------------------------------------------------------------

    def _watch(self, service: str | None) -> Watcher:
        """A watcher on etcd's watch stream; see the module docstring."""
        watcher = EtcdWatcher(self, service)
        self._watchers.add(watcher)
        return watcher
