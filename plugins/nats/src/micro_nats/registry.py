"""``nats``: a :class:`~micro.registry.Registry` on a JetStream key-value bucket.

* **Layout.** Each node is one key of the bucket ``bucket`` (``micro_registry``, created on start
  if missing): ``<name>.<version>.<node id>``, each part base64url-encoded behind a ``_`` (so any
  name is a valid key, and one service's keys share a prefix). Its value is a JSON object with the
  node, the version's metadata and endpoints as that registration gave them, and the wall-clock
  time the node expires at (``null``: never).
* **Register** puts one key per node; **deregister** deletes them. A version's metadata and endpoints
  are those of its most recently written node.
* **TTL.** A node registered with a ttl is live until ``expires``: readers leave out a node whose
  time has passed (the hosts' clocks are assumed to agree to well under a ttl), so a killed service's
  nodes vanish from reads exactly ttl seconds after its last registration, and from watchers within
  a few milliseconds after that. The registry that notices an expired node deletes its key (only if
  it was not written again meanwhile). The NATS server in use needs no per-key TTL support (2.9+).
* **Reads.** ``get_service`` and ``list_services`` answer from the state the registry follows (see
  Watch), after asking the server for the bucket's last sequence and waiting (at most ``timeout``)
  until that state has caught up with it: one round trip, and they see every registration the
  server had confirmed, from any process.
* **Watch.** From ``start()`` on, the registry follows the bucket (one key-value watch) and keeps its
  state; each change of a ``(name, version)``, and each expiry, is diffed into create/update/delete
  results for every watcher. A registration of several nodes is several writes, so a watcher may see
  it as a create and then updates. If the connection to the bucket is lost for good, watchers fail
  with :class:`~micro.errors.BackendUnavailable`.

Deleted keys leave a small marker in the bucket's stream (one per node id ever deregistered).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

from micro.errors import BackendUnavailable, BadRequest, MicroError
from micro.registry import Endpoint, Node, Registry, Service, Watcher
from micro.registry.watch import Watchers, diff

from ._client import connect
from ._errors import translate
from .options import NatsRegistryOptions, display_address, server_urls

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

__all__ = ["NatsRegistry"]

logger = logging.getLogger("micro.registry")

_Key = tuple[str, str]
#: The longest bucket key (encoded name, version and node id), well under the server's max_control_line.
_MAX_KEY: Final = 1024
# Seconds between a node's expiry and the watchers hearing of it, at most (timer slack).
_LATE: Final = 0.005


def _enc(text: str) -> str:
    return "_" + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _dec(token: str) -> str:
    body = token[1:]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def _key(name: str, version: str, node: str) -> str:
    key = f"{_enc(name)}.{_enc(version)}.{_enc(node)}"
    # The server closes a connection whose protocol line exceeds max_control_line (4 KiB by default).
    if len(key) > _MAX_KEY:
        raise BadRequest(
            f"service {name!r:.64}: name, version and node id take {len(key)} bytes encoded; at most {_MAX_KEY}"
        )
    return key


@dataclass(slots=True)
class _Entry:
    """One node as the bucket holds it."""

    revision: int
    node: Node
    metadata: dict[str, str]
    endpoints: list[Endpoint]
    expires: float | None

    def live(self, now: float) -> bool:
        return self.expires is None or self.expires > now


def _parse(key: str, value: bytes | None, revision: int) -> tuple[_Key, _Entry] | None:
    """The ``(name, version)`` and entry of a bucket key, or ``None`` for a key this registry did not write."""
    try:
        name_token, version_token, _ = key.split(".")
        name, version = _dec(name_token), _dec(version_token)
        data = json.loads(value or b"")
        node = Node.from_dict(data["node"])
        service = Service.from_dict(data.get("service") or {"name": name})
        expires = data.get("expires")
        if expires is not None and not isinstance(expires, (int, float)):
            return None
    except (ValueError, KeyError, TypeError, binascii.Error, MicroError):
        return None
    return (name, version), _Entry(revision, node, service.metadata, service.endpoints, expires)


def _snapshot(key: _Key, nodes: dict[str, _Entry], now: float) -> Service | None:
    live = sorted((e for e in nodes.values() if e.live(now)), key=lambda e: e.node.id)
    if not live:
        return None
    newest = max(live, key=lambda e: e.revision)
    return Service(key[0], key[1], dict(newest.metadata), list(newest.endpoints), [e.node for e in live]).copy()


class NatsRegistry(Registry):
    """Service discovery on a NATS JetStream key-value bucket. See the module docstring."""

    options_type: ClassVar[type[NatsRegistryOptions]] = NatsRegistryOptions
    options: NatsRegistryOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"ttl", "watch"})

    def __init__(self, options: NatsRegistryOptions | None = None) -> None:
        super().__init__(options)
        self._urls = server_urls(self.options.address)
        self._where = f"nats at {display_address(self._urls)} (MICRO_REGISTRY_ADDRESS)"
        self._nc: Client | None = None
        self._kv: KeyValue | None = None
        self._watchers = Watchers()
        #: The bucket as this registry follows it: (name, version) -> node id -> entry.
        self._state: dict[_Key, dict[str, _Entry]] = {}
        #: What watchers were last told about each version, so every change is reported exactly once.
        self._published: dict[_Key, Service] = {}
        self._follower: asyncio.Task[None] | None = None
        self._bucket_watch: Any = None  # the driver's key-value watcher (untyped) that _follow reads
        self._js: JetStreamContext | None = None
        #: The bucket's stream sequence that _state is up to date with, and an event set whenever it moves.
        self._seen = 0
        self._advanced = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    @property
    def address(self) -> str:
        return display_address(self._urls)

    def _translate(self, exc: Exception) -> MicroError | None:
        return translate(exc, self._where)

    # -- lifecycle ------------------------------------------------------------------------------

    async def _start(self) -> None:
        nc = await connect(
            self._urls,
            where=self._where,
            connect_timeout=self.options.connect_timeout,
            role="registry",
            logger=logger,
        )
        try:
            self._kv = kv = await self._bucket(nc)
            self._js = nc.jetstream(timeout=self.options.timeout)
            # Everything up to here is in the watch's first values (the latest of each key).
            self._seen = (await self._js.stream_info(self._stream)).state.last_seq
            watcher: Any = await kv.watchall()  # the driver's watcher is untyped
            self._state, self._published = {}, {}
            while (entry := await watcher.updates(timeout=self.options.timeout)) is not None:
                self._apply(entry.key, entry.value, entry.revision, entry.operation, publish=False)
            now = time.time()
            self._published = {k: s for k in self._state if (s := _snapshot(k, self._state[k], now)) is not None}
            self._schedule()
        except BaseException as exc:
            await nc.close()
            self._kv = None
            if isinstance(exc, Exception) and not isinstance(exc, MicroError):
                self._fail(exc)
            raise
        self._nc, self._bucket_watch = nc, watcher
        self._follower = asyncio.create_task(self._follow(watcher), name="micro.registry.nats.follow")

    @property
    def _stream(self) -> str:
        return f"KV_{self.options.bucket}"

    async def _bucket(self, nc: Client) -> KeyValue:
        from nats.js.api import KeyValueConfig, StorageType
        from nats.js.errors import BadRequestError, BucketNotFoundError

        js = nc.jetstream(timeout=self.options.timeout)
        try:
            return await js.key_value(self.options.bucket)
        except BucketNotFoundError:
            pass
        try:
            config = KeyValueConfig(bucket=self.options.bucket, history=1, storage=StorageType.FILE)
            return await js.create_key_value(config)
        except BadRequestError as exc:
            if exc.err_code != 10058:  # another registry created it meanwhile
                raise
            return await js.key_value(self.options.bucket)

    async def _close(self) -> None:
        # The watch is stopped first: that ends the follower's wait. Closing the connection alone
        # would also leave the driver's heartbeat task of the watch running.
        bucket_watch, self._bucket_watch = self._bucket_watch, None
        if bucket_watch is not None:
            with contextlib.suppress(Exception):
                await bucket_watch.stop()
        follower, self._follower = self._follower, None
        # Cancelled until done: Python 3.11's asyncio.wait_for (in the driver) can swallow a cancel.
        while follower is not None and not follower.done():
            follower.cancel()
            await asyncio.wait({follower}, timeout=0.05)
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, float("inf")
        await self._watchers.stop_all()
        nc, self._nc, self._kv, self._js = self._nc, None, None, None
        self._state, self._published = {}, {}
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    def _ready(self) -> KeyValue:
        kv = self._kv
        if kv is None:  # closed by a close() that ran while this call waited
            raise self._closed_error()
        return kv

    # -- following the bucket -------------------------------------------------------------------

    async def _follow(self, watcher: Any) -> None:
        import nats.errors

        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=60.0)
                except nats.errors.TimeoutError:
                    continue
                if entry is not None and not hasattr(entry, "key"):
                    return  # the watch was stopped (the driver's end-of-iteration marker)
                if entry is not None:
                    self._apply(entry.key, entry.value, entry.revision, entry.operation, publish=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = translate(exc, self._where) or BackendUnavailable(f"{self._where}: {exc}")
            logger.warning("stopped following the registry bucket: %s", error)
            self._watchers.fail(error)

    def _apply(self, key: str, value: bytes | None, revision: int, operation: str | None, *, publish: bool) -> None:
        if revision > self._seen:
            self._seen = revision
            self._advanced.set()
        parsed = _parse(key, value, revision) if operation is None else None
        if parsed is None:
            if operation is None:
                return  # not one of ours: ignored
            try:
                name_token, version_token, node_token = key.split(".")
                version_key = (_dec(name_token), _dec(version_token))
                node_id = _dec(node_token)
            except (ValueError, binascii.Error):
                return
            nodes = self._state.get(version_key)
            if nodes is not None:
                nodes.pop(node_id, None)
                if not nodes:
                    del self._state[version_key]
        else:
            version_key, entry = parsed
            self._state.setdefault(version_key, {})[entry.node.id] = entry
            if entry.expires is not None:
                self._schedule(entry.expires)
        if publish:
            self._publish(version_key, time.time())

    def _publish(self, key: _Key, now: float) -> None:
        current = _snapshot(key, self._state.get(key, {}), now)
        result = diff(self._published.get(key), current)
        if result is None:
            return
        if current is None:
            self._published.pop(key, None)
        else:
            self._published[key] = current
        self._watchers.publish([result])

    def _schedule(self, expires: float | None = None) -> None:
        """Have :meth:`_expire` run at the earliest expiry (``expires``, or the earliest one known)."""
        if expires is None:
            expires = min(
                (e.expires for nodes in self._state.values() for e in nodes.values() if e.expires is not None),
                default=float("inf"),
            )
        if expires >= self._timer_at or expires == float("inf"):
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = expires
        self._timer = loop.call_later(max(0.0, expires - time.time()) + _LATE, self._expire)

    def _expire(self) -> None:
        """Tell watchers of the nodes that expired, delete their keys, and wait for the next expiry."""
        self._timer, self._timer_at = None, float("inf")
        now = time.time()
        gone: list[tuple[str, int]] = []
        for key, nodes in list(self._state.items()):
            expired = [e for e in nodes.values() if not e.live(now)]
            if not expired:
                continue
            for entry in expired:
                del nodes[entry.node.id]
                gone.append((_key(key[0], key[1], entry.node.id), entry.revision))
            if not nodes:
                del self._state[key]
            self._publish(key, now)
        if gone and self._kv is not None:
            task = asyncio.create_task(self._delete_expired(self._kv, gone), name="micro.registry.nats.expire")
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._schedule()

    async def _delete_expired(self, kv: KeyValue, keys: list[tuple[str, int]]) -> None:
        # Only if unchanged since: a node registered again meanwhile must stay.
        for key, revision in keys:
            with contextlib.suppress(Exception):
                await kv.delete(key, last=revision)

    # -- the interface --------------------------------------------------------------------------

    def _check_service(self, service: Service) -> None:
        """:class:`~micro.errors.BadRequest` for a name, version and node id too long for a bucket key."""
        for node in service.nodes:
            _key(service.name, service.version, node.id)

    async def _register(self, service: Service, ttl: float | None) -> None:
        keys = [_key(service.name, service.version, node.id) for node in service.nodes]
        kv = self._ready()
        expires = None if ttl is None else time.time() + ttl
        header: dict[str, Any] = {"name": service.name, "version": service.version, "metadata": dict(service.metadata)}
        header["endpoints"] = [e.to_dict() for e in service.endpoints]
        revisions = await asyncio.gather(
            *(
                kv.put(key, json.dumps({"node": node.to_dict(), "service": header, "expires": expires}).encode())
                for key, node in zip(keys, service.nodes, strict=True)
            )
        )
        # Returned once this registry's own view holds the change: a watch() begun after register()
        # returns is not handed this change as a new one (conformance R15), and reads see it.
        await self._sync(max(revisions, default=0))

    async def _deregister(self, service: Service) -> None:
        keys = [_key(service.name, service.version, node.id) for node in service.nodes]
        kv = self._ready()
        await asyncio.gather(*(kv.delete(key) for key in keys))
        await self._sync()  # as register(): the deregistration is in this registry's view when it returns

    async def _sync(self, last: int | None = None) -> None:
        """Wait until the followed state holds every write the server had confirmed when this was called
        (or, given ``last``, the write of that sequence and every one before it).

        One request (the bucket's last sequence), then no more than the follower's lag: reads see
        every registration that returned before them, from any process.
        """
        js = self._js
        if js is None:
            raise self._closed_error()
        if last is None:  # a driver error here is translated by the base (Registry calls _translate)
            last = (await js.stream_info(self._stream)).state.last_seq
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.timeout
        while self._seen < last:
            follower = self._follower
            if follower is None or follower.done():
                raise BackendUnavailable(
                    f"{self._where}: the registry stopped following bucket {self.options.bucket!r}"
                )
            self._advanced.clear()
            try:
                await asyncio.wait_for(self._advanced.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise BackendUnavailable(
                    f"{self._where}: bucket {self.options.bucket!r} did not catch up within "
                    f"timeout={self.options.timeout:g}s (MICRO_REGISTRY_TIMEOUT)"
                ) from None

    async def _get_service(self, name: str) -> list[Service]:
        await self._sync()
        now = time.time()
        state = self._state
        keys = sorted(key for key in state if key[0] == name)
        return [s for key in keys if (s := _snapshot(key, state[key], now)) is not None]

    async def _list_services(self) -> list[Service]:
        await self._sync()
        now = time.time()
        state = self._state
        return [s for key in sorted(state) if (s := _snapshot(key, state[key], now)) is not None]

    def _watch(self, service: str | None) -> Watcher:
        # On a registry not started yet, the base starts it (changes before the bucket is read are not reported).
        asyncio.get_running_loop()  # fail here, not in the first push, when called without a loop
        return self._watchers.add(service)
