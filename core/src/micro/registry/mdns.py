"""Multicast DNS discovery on the local network, with Go Micro's TXT encoding (``zeroconf``).

Each node is one DNS-SD instance of the type ``_<domain>._tcp.local.``
(``_micro._tcp.local.`` by default), named by a hash of ``(service, version,
node id)``. Its SRV record carries the node's port, its A/AAAA records the
node's IP when the address has one, and its TXT record the description, as
Go Micro writes it: ``hex(zlib(JSON))`` cut into strings of 255 characters,
where the JSON holds ``service``, ``version``, ``endpoints`` and ``metadata``
(the node's), plus ``id``, ``address`` and ``service_metadata``, which Go
Micro ignores.

Go Micro announces under the non-DNS-SD name ``<service>.micro.`` instead,
which python-zeroconf cannot express, so the two do not see each other.

Caveats: mDNS only reaches the local link, and only where multicast is allowed
(often not between containers or on cloud networks). A lookup right after
start waits ``options.timeout`` for answers.

A node whose process dies without deregistering (kill -9, a lost host) sends
no goodbye. Register with a ``ttl``: it becomes the TTL of the node's SRV,
TXT and address records, and every renewal announces them again. Peers check
the SRV records of the nodes they know once a second, and drop a node whose
record has lapsed and that does not answer one direct question, so a dead
node leaves within about its TTL plus a second. (python-zeroconf keeps PTR
records for at least 1,125 seconds whatever TTL they carry, so its browser
alone would report such a node removed only after about 19 minutes.)
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import time
import zlib
from collections.abc import Awaitable
from typing import Any, ClassVar

import orjson

from ..errors import BackendUnavailable, BadRequest, MessageTooLarge, MissingExtra
from .base import Endpoint, Node, Registry, Service, Watcher
from .options import MDNSRegistryOptions
from .watch import Watchers, diff_views

try:
    from zeroconf import IPVersion, ServiceInfo, ServiceStateChange, Zeroconf, current_time_millis
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf
    from zeroconf.const import _CLASS_IN, _TYPE_SRV
except ModuleNotFoundError as exc:  # an extra: the zero-config path never needs mDNS
    raise MissingExtra("registry 'mdns'", extra="mdns", module="zeroconf") from exc

__all__ = ["MDNSRegistry", "decode_txt", "encode_txt"]

log = logging.getLogger(__name__)

#: Largest TXT record accepted; what is left of an mDNS packet (8966 bytes) after the other records.
MAX_TXT = 8000
_CHUNK = 255
#: Seconds between checks of the remote nodes' SRV records for lapsed ones.
_SWEEP = 1.0


def encode_txt(service: Service, node: Node) -> bytes:
    """The raw TXT record for ``node`` of ``service``: Go Micro's ``hex(zlib(json))`` in 255-byte strings.

    :raises ~micro.errors.MessageTooLarge: the description does not fit in an mDNS packet.
    """
    payload = {
        "service": service.name,
        "version": service.version,
        "endpoints": [e.to_dict() for e in service.endpoints],
        "metadata": dict(node.metadata),
        "id": node.id,
        "address": node.address,
        "service_metadata": dict(service.metadata),
    }
    encoded = zlib.compress(orjson.dumps(payload)).hex().encode()
    chunks = [encoded[i : i + _CHUNK] for i in range(0, len(encoded), _CHUNK)]
    text = b"".join(bytes((len(chunk),)) + chunk for chunk in chunks)
    if len(text) > MAX_TXT:
        raise MessageTooLarge(
            f"service {service.name!r}: node {node.id!r} needs a {len(text)}-byte TXT record, "
            f"more than mDNS allows ({MAX_TXT}); register fewer or smaller endpoints",
            id="registry",
        )
    return text


def decode_txt(text: bytes, fallback_address: str = "") -> Service:
    """The one-node service in a TXT record written by :func:`encode_txt` (or by Go Micro).

    :raises ~micro.errors.BadRequest: the record is not such a description.
    """
    chunks = []
    i = 0
    while i < len(text):
        size = text[i]
        chunks.append(text[i + 1 : i + 1 + size])
        i += 1 + size
    try:
        data = orjson.loads(zlib.decompress(bytes.fromhex(b"".join(chunks).decode("ascii"))))
    except (ValueError, zlib.error) as exc:
        raise BadRequest(f"not a micro mDNS TXT record: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("service"), str):
        raise BadRequest("not a micro mDNS TXT record: no service name")
    node = Node.from_dict({"id": data.get("id"), "address": data.get("address") or fallback_address})
    node.metadata = Node.from_dict({"metadata": data.get("metadata")}).metadata
    return Service(
        name=data["service"],
        version=str(data.get("version") or "latest"),
        metadata=Service.from_dict({"metadata": data.get("service_metadata")}).metadata,
        endpoints=[Endpoint.from_dict(e) for e in data.get("endpoints") or []],
        nodes=[node],
    )


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        return address, 0
    return host.strip("[]"), int(port)


class _Local:
    """A node this registry announces."""

    __slots__ = ("info", "record_ttl", "service", "timer")

    def __init__(self, service: Service, info: ServiceInfo, record_ttl: int | None) -> None:
        self.service = service
        self.info = info
        self.record_ttl = record_ttl
        self.timer: asyncio.TimerHandle | None = None


class MDNSRegistry(Registry):
    """Services announced and discovered by multicast DNS on the local network.

    Bind it to chosen interfaces with ``interfaces`` (``MICRO_REGISTRY_INTERFACES``;
    ``127.0.0.1`` keeps it on this machine). The nodes this instance registers
    are answered by it for as long as it runs; :meth:`close` says goodbye for
    them. See the module docstring for the wire format and the caveats.
    """

    options_type: ClassVar[type[MDNSRegistryOptions]] = MDNSRegistryOptions
    options: MDNSRegistryOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"ttl", "watch"})

    def __init__(self, options: MDNSRegistryOptions | None = None) -> None:
        super().__init__(options)
        self._type = f"_{self.options.domain}._tcp.local."
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._started_at = 0.0
        self._local: dict[str, _Local] = {}
        #: Instance names this registry announced: the local entry is authoritative for them.
        self._own: set[str] = set()
        self._remote: dict[str, Service] = {}
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._probing: set[str] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._broadcasts: set[asyncio.Future[Any]] = set()
        self._view: dict[tuple[str, str], Service] = {}
        self._watchers = Watchers()

    # -- lifecycle ------------------------------------------------------------------------------

    async def _start(self) -> None:
        """Open the mDNS sockets and start browsing.

        :raises ~micro.errors.BackendUnavailable: the sockets cannot be opened.
        """
        interfaces: Any = list(self.options.interfaces) or None
        versions = {ipaddress.ip_address(i).version for i in self.options.interfaces if _is_ip(i)}
        ip_version = IPVersion.V6Only if versions == {6} else IPVersion.All if 6 in versions else IPVersion.V4Only
        try:
            zc = AsyncZeroconf(interfaces=interfaces, ip_version=ip_version) if interfaces else AsyncZeroconf()
            await zc.zeroconf.async_wait_for_start()
        except Exception as exc:
            raise BackendUnavailable(f"mDNS cannot start: {exc}", id="registry") from exc
        self._zc = zc
        self._started_at = time.monotonic()
        loop = asyncio.get_running_loop()

        def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
            loop.call_soon_threadsafe(self._on_change, name, state_change)

        self._browser = AsyncServiceBrowser(zc.zeroconf, [self._type], handlers=[on_change])
        self._sweeper = asyncio.ensure_future(self._sweep())

    async def _close(self) -> None:
        """Withdraw this registry's nodes (goodbye packets), stop watchers and close the sockets."""
        await self._watchers.stop_all()
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
        for task in list(self._resolving.values()):
            task.cancel()
        self._resolving.clear()
        for entry in self._local.values():
            if entry.timer is not None:
                entry.timer.cancel()
        zc, self._zc = self._zc, None
        browser, self._browser = self._browser, None
        if browser is not None:
            await browser.async_cancel()
        if self._broadcasts:
            await asyncio.wait(self._broadcasts, timeout=2)
        self._broadcasts.clear()
        if zc is not None:
            await zc.async_close()  # unregisters every local service, with goodbyes
        self._local.clear()
        self._own.clear()
        self._remote.clear()
        self._view = {}

    def _zeroconf(self) -> AsyncZeroconf:
        zc = self._zc
        if zc is None:  # closed by a close() that ran while this call waited
            raise self._closed_error()
        return zc

    async def _settle(self) -> None:
        """Right after start, wait ``timeout`` for answers; then for lookups still in flight."""
        wait = self._started_at + self.options.timeout - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if self._resolving:
            await asyncio.wait(list(self._resolving.values()), timeout=self.options.timeout)

    # -- the interface --------------------------------------------------------------------------

    async def _register(self, service: Service, ttl: float | None) -> None:
        record_ttl = None if ttl is None else max(1, math.ceil(ttl))
        copy = service.copy()
        key = (copy.name, copy.version)
        announce = [(self._instance(*key, n.id), copy.replace(nodes=[n]), record_ttl) for n in copy.nodes]
        # The version's other nodes take the new metadata and endpoints too, so that every node
        # announces the same description of it.
        given = {name for name, _, _ in announce}
        for name, entry in self._local.items():
            old = entry.service
            same_version = name not in given and (old.name, old.version) == key
            if same_version and (old.metadata, old.endpoints) != (copy.metadata, copy.endpoints):
                announce.append((name, copy.replace(nodes=old.nodes), entry.record_ttl))
        infos = [self._info(name, one, rttl) for name, one, rttl in announce]  # may raise MessageTooLarge
        zc = self._zeroconf()
        loop = asyncio.get_running_loop()
        try:
            for (name, one, rttl), info in zip(announce, infos, strict=True):
                found = self._local.get(name)
                if found is None:
                    self._local[name] = entry = _Local(one, info, rttl)
                    self._own.add(name)
                    self._track(await zc.async_register_service(info, cooperating_responders=True))
                else:
                    entry = found
                    changed = (entry.info.text, entry.info.port, entry.record_ttl) != (info.text, info.port, rttl)
                    if changed or (rttl is not None and name in given):
                        # A renewal announces the records again, so peers' copies of a TTL'd node stay fresh
                        # while it lives and lapse within the TTL once it stops renewing.
                        self._track(await zc.async_update_service(info))
                        entry.info, entry.record_ttl = info, rttl
                    entry.service = one
                if name not in given:
                    continue
                if entry.timer is not None:
                    entry.timer.cancel()
                    entry.timer = None
                if ttl is not None:
                    entry.timer = loop.call_later(ttl, self._expire, name)
        except Exception as exc:
            raise BackendUnavailable(f"mDNS registration of {service.name!r} failed: {exc}", id="registry") from exc
        finally:
            self._publish()

    def _info(self, name: str, one: Service, record_ttl: int | None) -> ServiceInfo:
        node = one.nodes[0]
        host, port = _split_address(node.address)
        info = ServiceInfo(
            self._type,
            name,
            port=port,
            properties=encode_txt(one, node),
            server=f"{name.partition('.')[0]}.local.",
            parsed_addresses=[host] if _is_ip(host) else None,
        )
        if record_ttl is not None:
            info.host_ttl = info.other_ttl = record_ttl
        return info

    async def _deregister(self, service: Service) -> None:
        name = service.name
        zc = self._zeroconf()
        for node in service.nodes:
            entry = self._local.pop(self._instance(name, service.version, node.id), None)
            if entry is None:
                continue
            if entry.timer is not None:
                entry.timer.cancel()
            self._track(await zc.async_unregister_service(entry.info))
        self._publish()

    async def _get_service(self, name: str) -> list[Service]:
        await self._settle()
        return [self._view[key].copy() for key in sorted(self._view) if key[0] == name]

    async def _list_services(self) -> list[Service]:
        await self._settle()
        return [self._view[key].copy() for key in sorted(self._view)]

    def _watch(self, service: str | None) -> Watcher:
        # On a registry not started yet, the base starts it and the watcher raises a failure to start.
        asyncio.get_running_loop()
        return self._watchers.add(service)

    # -- internals ------------------------------------------------------------------------------

    def _instance(self, name: str, version: str, node_id: str) -> str:
        digest = hashlib.sha256(f"{name}\0{version}\0{node_id}".encode()).hexdigest()[:32]
        return f"{digest}.{self._type}"

    def _track(self, broadcast: Awaitable[Any]) -> None:
        future = asyncio.ensure_future(broadcast)
        self._broadcasts.add(future)
        future.add_done_callback(self._broadcast_done)

    def _broadcast_done(self, future: asyncio.Future[Any]) -> None:
        self._broadcasts.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.debug("mDNS broadcast failed: %r", future.exception())

    def _expire(self, name: str) -> None:
        entry = self._local.pop(name, None)
        if entry is None or self._zc is None:
            return
        self._track(self._zc.async_unregister_service(entry.info))
        self._publish()

    def _on_change(self, name: str, change: ServiceStateChange) -> None:
        if self._zc is None or name in self._own:
            return
        previous = self._resolving.pop(name, None)
        if previous is not None:
            previous.cancel()
        if change is ServiceStateChange.Removed:
            if self._remote.pop(name, None) is not None:
                self._publish()
            return
        task = asyncio.ensure_future(self._resolve(name))
        self._resolving[name] = task

        def forget(done: asyncio.Future[None]) -> None:
            if self._resolving.get(name) is done:
                del self._resolving[name]

        task.add_done_callback(forget)

    async def _sweep(self) -> None:
        """Once a second: probe the remote nodes whose SRV record has lapsed from the cache."""
        while True:
            await asyncio.sleep(_SWEEP)
            if self._zc is None or not self._remote:
                continue
            now = current_time_millis()
            cache = self._zc.zeroconf.cache
            for name in list(self._remote):
                if name in self._probing or name in self._resolving:
                    continue
                records = cache.get_all_by_details(name, _TYPE_SRV, _CLASS_IN)
                if not any(not record.is_expired(now) for record in records):
                    self._probing.add(name)
                    self._track(self._probe(name))

    async def _probe(self, name: str) -> None:
        """Ask ``name`` directly; drop it unless a fresh SRV record comes back.

        A node registered without a TTL renews nothing yet still answers, so a lapsed record
        alone is not proof that it is gone.
        """
        zc = self._zc
        if zc is None:
            return
        info = AsyncServiceInfo(self._type, name)
        try:
            await info.async_request(zc.zeroconf, max(250, int(self.options.timeout * 1000)))
        except Exception as exc:  # no answer is what this finds out; a failed question counts as none
            log.debug("mDNS probe of %s failed: %r", name, exc)
        finally:
            self._probing.discard(name)
        now = current_time_millis()
        records = zc.zeroconf.cache.get_all_by_details(name, _TYPE_SRV, _CLASS_IN)
        if any(not record.is_expired(now) for record in records) or self._zc is not zc:
            return
        if self._remote.pop(name, None) is not None:
            log.debug("mDNS instance %s stopped answering after its records lapsed", name)
            self._publish()

    async def _resolve(self, name: str) -> None:
        if self._zc is None:
            return
        info = AsyncServiceInfo(self._type, name)
        try:
            if not await info.async_request(self._zc.zeroconf, max(250, int(self.options.timeout * 1000))):
                return
            addresses = info.parsed_addresses()
            fallback = f"{addresses[0]}:{info.port}" if addresses and info.port else ""
            service = decode_txt(info.text or b"", fallback)
        except BadRequest as exc:
            log.debug("ignoring mDNS instance %s: %s", name, exc)
            return
        except Exception as exc:  # a resolution that failed is retried by the browser's next event
            log.debug("cannot resolve mDNS instance %s: %r", name, exc)
            return
        self._remote[name] = service
        self._publish()

    def _publish(self) -> None:
        """Rebuild the view from local and remote nodes, and tell watchers what changed."""
        view: dict[tuple[str, str], Service] = {}
        remote = [one for name, one in self._remote.items() if name not in self._local]
        for one in [*(e.service for e in self._local.values()), *remote]:
            key = (one.name, one.version)
            entry = view.get(key)
            if entry is None:
                view[key] = entry = Service(one.name, one.version, dict(one.metadata), list(one.endpoints))
            if all(n.id != one.nodes[0].id for n in entry.nodes):
                entry.nodes.append(one.nodes[0])
        for entry in view.values():
            entry.nodes.sort(key=lambda n: n.id)
        old, self._view = self._view, view
        self._watchers.publish(diff_views(old, view))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
