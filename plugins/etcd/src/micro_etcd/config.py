"""``etcd``: a config :class:`~micro.config.Source` reading etcd keys under a prefix.

Every key under ``prefix`` is one value of the configuration: the rest of the
key, split on ``/``, is its path (``micro/config/database/host`` is
``database.host``), and its value is JSON-decoded when it parses as JSON
(``5432``, ``true``, ``{"a": 1}``), else kept as a string. A key may hold a JSON
object, merged with the keys below it. Keys ending in ``/`` are skipped and an
empty value reads as ``""``; every key is read at one revision, so a read never
mixes two writes.

Content that cannot be turned into one nested mapping raises
:class:`~micro.config.MalformedConfig` naming the key: a value that is not UTF-8,
a key with an empty segment (``a//b``), or a key that is both a value and a
folder (``a`` = ``1`` next to ``a/b``).

:meth:`~EtcdSource.watch` follows the prefix on etcd's watch stream from the
revision of its first read; after each change the prefix is read whole and
delivered if it decodes to different data (changes that land together are
delivered as one). :meth:`~EtcdSource.write` replaces everything under the
prefix in one transaction (strings that would read back as another type are
stored JSON-quoted, so what is written is what is read).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Final

from micro.config import ChangeSet, MalformedConfig, Source, SourceWatcher
from micro.errors import BadRequest, Conflict, MicroError

from ._client import Etcd, KeyValue, b64, prefix_end
from .options import EtcdSourceOptions

__all__ = ["EtcdSource"]

#: Operations etcd accepts in one transaction by default (``--max-txn-ops``).
MAX_OPERATIONS: Final = 128
#: Transactions a write tries while other writers change the prefix under it.
_WRITE_ATTEMPTS: Final = 5
#: Seconds between attempts of a watcher to reopen a broken stream.
_RETRY: Final = 0.5


def _merge(into: dict[str, Any], key: str, path: list[str], value: Any, source: str) -> None:
    node = into
    for depth, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = "/".join(path[: depth + 1])
            raise MalformedConfig(f"key {key!r} is below {where!r}, which holds a value", source=source)
        node = child
    leaf = path[-1]
    if leaf in node:
        existing = node[leaf]
        if isinstance(existing, dict) and isinstance(value, dict):
            for sub, item in value.items():
                _merge(existing, key, [sub], item, source)
            return
        raise MalformedConfig(f"key {key!r} holds a value where other keys make a folder", source=source)
    node[leaf] = value


def _flatten(data: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, str]]:
    for key, value in data.items():
        if not isinstance(key, str) or not key or "/" in key:
            raise BadRequest(f"config keys written to etcd must be non-empty and contain no '/', got {key!r}")
        here = f"{path}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, here + "/")
            continue
        if isinstance(value, str):
            try:
                json.loads(value)
            except ValueError:
                yield here, value  # stored as it is: it reads back as this string
                continue
        try:
            yield here, json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"config value at {here!r} cannot be stored as JSON: {exc}") from None


class EtcdSource(Source):
    """Configuration from etcd keys under ``prefix``. See the module docstring."""

    options_type: ClassVar[type[EtcdSourceOptions]] = EtcdSourceOptions
    options: EtcdSourceOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"watch", "write"})

    def __init__(self, options: EtcdSourceOptions | None = None) -> None:
        super().__init__(options)
        self._etcd = Etcd(self.options.address, variable="MICRO_CONFIG_ADDRESS", timeout=self.options.timeout)
        self.prefix = self.options.prefix
        #: What change sets name as their origin: ``"etcd:micro/config/"``.
        self.source = f"etcd:{self.prefix}"
        self._watchers: set[_EtcdWatcher] = set()

    @property
    def address(self) -> str:
        """The etcd server in use."""
        return self._etcd.address

    async def _start(self) -> None:
        """Find the first server that answers; :class:`~micro.errors.BackendUnavailable` (naming it) if none does."""
        await self._etcd.open()

    async def _close(self) -> None:
        """Stop every watcher and release the connection."""
        for watcher in list(self._watchers):
            await watcher.stop()
        await self._etcd.close()

    async def _client(self) -> Etcd:
        # A source starts itself on first use, as the loader expects of every source.
        if self._component_state != "started":
            await self.start()
        return self._etcd

    async def _fetch(self) -> tuple[int, list[KeyValue]]:
        client = await self._client()
        return await client.range(self.prefix, prefix_end(self.prefix), f"reading {self.prefix!r}")

    def _decode(self, entries: list[KeyValue]) -> ChangeSet:
        data: dict[str, Any] = {}
        for entry in sorted(entries, key=lambda e: e.key):
            try:
                key = entry.key.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedConfig(f"key {entry.key[:200]!r} is not UTF-8 text", source=self.source) from None
            relative = key[len(self.prefix) :]
            if not key.startswith(self.prefix) or not relative or relative.endswith("/"):
                continue  # the prefix itself, or a folder marker
            path = relative.split("/")
            if "" in path:
                raise MalformedConfig(f"key {key!r} has an empty path segment", source=self.source)
            try:
                text = entry.value.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedConfig(f"the value of key {key!r} is not UTF-8 text", source=self.source) from None
            try:
                value = json.loads(text)
            except ValueError:
                value = text
            _merge(data, key, path, value, self.source)
        return ChangeSet.of(data, self.source)

    async def read(self) -> ChangeSet:
        """Every key under ``prefix``, as one nested mapping; see the module docstring for decoding and errors."""
        _, entries = await self._fetch()
        return self._decode(entries)

    async def write(self, changeset: ChangeSet) -> None:
        """Replace everything under ``prefix`` with ``changeset.data``, in one transaction.

        The keys to delete are read first; the transaction commits only if no key
        under the prefix changed since (else it is read and tried again, up to 5
        times, then :class:`~micro.errors.Conflict`). Raises
        :class:`~micro.errors.BadRequest` for keys containing ``/``, values JSON
        cannot hold, or a write needing more than 128 operations (etcd's default
        limit for one transaction: new keys plus stale ones).
        """
        pairs = {self.prefix + k: v for k, v in _flatten(changeset.data)}
        client = await self._client()
        end = prefix_end(self.prefix)
        for _ in range(_WRITE_ATTEMPTS):
            revision, entries = await self._fetch()
            stale = sorted({e.key for e in entries} - {k.encode("utf-8") for k in pairs})
            if len(stale) + len(pairs) > MAX_OPERATIONS:
                raise BadRequest(
                    f"a config write to {self.prefix!r} needs {len(stale) + len(pairs)} operations, more than the"
                    f" {MAX_OPERATIONS} etcd allows in one transaction by default"
                )
            unchanged = {
                "key": b64(self.prefix),
                "range_end": b64(end),
                "target": "MOD",
                "result": "LESS",
                "mod_revision": str(revision + 1),
            }
            operations: list[dict[str, Any]] = [{"request_delete_range": {"key": b64(k)}} for k in stale]
            operations += [{"request_put": {"key": b64(k), "value": b64(v)}} for k, v in pairs.items()]
            won, _ = await client.txn([unchanged], operations, [], f"writing {self.prefix!r}")
            if won:
                return
        raise Conflict(f"{self.prefix!r} kept changing while it was written ({_WRITE_ATTEMPTS} attempts)")

    async def watch(self) -> SourceWatcher:
        """A watcher of later changes under ``prefix``, on etcd's watch stream; see :class:`SourceWatcher`."""
        revision, entries = await self._fetch()
        try:
            baseline: str | None = self._decode(entries).checksum
        except MalformedConfig:
            baseline = None
        watcher = _EtcdWatcher(self, await self._client(), revision, baseline)
        self._watchers.add(watcher)
        return watcher


class _EtcdWatcher(SourceWatcher):
    """A task follows the watch stream and flags changes; ``__anext__`` reads the prefix when flagged."""

    def __init__(self, source: EtcdSource, client: Etcd, revision: int, delivered: str | None) -> None:
        self._source = source
        self._client = client
        self._revision = revision
        self._delivered = delivered
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._error: MicroError | None = None
        self._task = asyncio.get_running_loop().create_task(self._follow(), name=f"etcd config watch {source.prefix}")

    async def _follow(self) -> None:
        prefix = self._source.prefix
        while True:
            try:
                async with self._client.watch(
                    prefix, prefix_end(prefix), self._revision + 1, f"watching {prefix!r}"
                ) as results:
                    async for result in results:
                        revision = int((result.get("header") or {}).get("revision") or 0)
                        if result.get("compact_revision"):
                            # Compacted past our revision: what changed is unknown, so read and compare.
                            self._revision = max(self._revision, int(result["compact_revision"]) - 1)
                            self._changed.set()
                            break
                        if result.get("events"):
                            self._revision = max(self._revision, revision)
                            self._changed.set()
            except MicroError as exc:
                self._error = exc  # raised by the next __anext__; the stream is reopened meanwhile
                self._changed.set()
            await asyncio.sleep(_RETRY)

    async def __anext__(self) -> ChangeSet:
        while True:
            if self._stopping.is_set():
                raise StopAsyncIteration
            changed = asyncio.ensure_future(self._changed.wait())
            stopping = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait({changed, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
                stopping.cancel()
            if self._stopping.is_set():
                raise StopAsyncIteration
            self._changed.clear()
            error, self._error = self._error, None
            if error is not None:
                raise error
            changeset = await self._source.read()  # a bad edit raises MalformedConfig; the next call resumes
            if changeset.checksum == self._delivered:
                continue
            self._delivered = changeset.checksum
            return changeset

    async def stop(self) -> None:
        self._stopping.set()
        self._source._watchers.discard(self)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
