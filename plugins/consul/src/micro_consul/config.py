"""``consul``: a config :class:`~micro.config.Source` reading the Consul KV store under a prefix.

Every key under ``prefix`` is one value of the configuration: the rest of the
key, split on ``/``, is its path (``micro/config/database/host`` is
``database.host``), and its value is JSON-decoded when it parses as JSON
(``5432``, ``true``, ``{"a": 1}``), else kept as a string. A key may hold a
JSON object, merged with the keys below it. Folder markers (keys ending in
``/``) are skipped and an empty value reads as ``""``.

Content that cannot be turned into one nested mapping raises
:class:`~micro.config.MalformedConfig` naming the key: a value that is not UTF-8,
a key with an empty segment (``a//b``), or a key that is both a value and a
folder (``a`` = ``1`` next to ``a/b``).

:meth:`~ConsulSource.watch` follows the prefix with blocking queries; each
change of the KV data under it is read whole and delivered if it decodes to
different data. :meth:`~ConsulSource.write` replaces everything under the
prefix in one transaction (strings that would read back as another type are
stored JSON-quoted, so what is written is what is read).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Final

from micro.config import ChangeSet, MalformedConfig, Source, SourceWatcher
from micro.errors import BadRequest

from ._client import Consul, dumps, wait_param
from .options import ConsulSourceOptions

__all__ = ["ConsulSource"]

#: Operations Consul accepts in one transaction (its ``txn_max_req_len`` aside).
_TXN_MAX: Final = 64


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
            raise BadRequest(f"config keys written to Consul must be non-empty and contain no '/', got {key!r}")
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
            yield here, dumps(value)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"config value at {here!r} cannot be stored as JSON: {exc}") from None


class ConsulSource(Source):
    """Configuration from Consul KV under ``prefix``. See the module docstring."""

    options_type: ClassVar[type[ConsulSourceOptions]] = ConsulSourceOptions
    options: ConsulSourceOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"watch", "write"})

    def __init__(self, options: ConsulSourceOptions | None = None) -> None:
        super().__init__(options)
        self._consul = Consul(
            self.options.address,
            variable="MICRO_CONFIG_ADDRESS",
            token=self.options.token,
            datacenter=self.options.datacenter,
            timeout=self.options.timeout,
        )
        self.prefix = self.options.prefix
        #: What change sets name as their origin: ``"consul:micro/config/"``.
        self.source = f"consul:{self.prefix}"
        self._watchers: set[_ConsulWatcher] = set()
        self._starting = asyncio.Lock()

    @property
    def address(self) -> str:
        """The Consul agent in use."""
        return self._consul.address

    async def start(self) -> None:
        """Find the first agent that answers; :class:`~micro.errors.BackendUnavailable` if none does. Idempotent."""
        async with self._starting:
            await self._consul.open()

    async def close(self) -> None:
        """Stop every watcher and release the connection. Idempotent."""
        for watcher in list(self._watchers):
            await watcher.stop()
        await self._consul.close()

    async def _open(self) -> Consul:
        if not self._consul.is_open:
            await self.start()
        return self._consul

    async def _fetch(self, *, index: str | None = None, wait: float = 0.0) -> tuple[str, list[dict[str, Any]]]:
        client = await self._open()
        if index is None:
            result = await client.call(f"reading {self.prefix!r}", lambda api: api.kv.get(self.prefix, recurse=True))
        else:
            result = await client.call(
                f"watching {self.prefix!r}",
                lambda api: api.kv.get(self.prefix, recurse=True, index=index, wait=wait_param(wait)),
                wait=wait,
            )
        found, entries = result
        return str(found), list(entries or [])

    def _decode(self, entries: list[dict[str, Any]]) -> ChangeSet:
        data: dict[str, Any] = {}
        for entry in sorted(entries, key=lambda e: str(e.get("Key", ""))):
            key = str(entry.get("Key", ""))
            relative = key[len(self.prefix) :]
            if not key.startswith(self.prefix) or not relative or relative.endswith("/"):
                continue  # the prefix itself, or a folder marker
            path = relative.split("/")
            if "" in path:
                raise MalformedConfig(f"key {key!r} has an empty path segment", source=self.source)
            raw = entry.get("Value") or b""
            try:
                text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
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
        """Replace everything under ``prefix`` with ``changeset.data``.

        One transaction when it takes at most 64 keys; beyond that keys are
        written then stale ones deleted, in batches, so a watcher may see a
        state in between. Raises :class:`~micro.errors.BadRequest` for keys
        containing ``/`` or values JSON cannot hold, and refuses an empty
        ``prefix`` (it would replace the whole KV store).
        """
        if not self.prefix:
            raise BadRequest("refusing to write with an empty prefix: it would replace the whole Consul KV store")
        pairs = dict(_flatten(changeset.data))
        client = await self._open()
        sets = [
            {"KV": {"Verb": "set", "Key": self.prefix + k, "Value": base64.b64encode(v.encode()).decode()}}
            for k, v in pairs.items()
        ]
        if len(sets) < _TXN_MAX:
            await self._txn(client, [{"KV": {"Verb": "delete-tree", "Key": self.prefix}}, *sets])
            return
        _, entries = await self._fetch()
        stale = {str(e.get("Key")) for e in entries} - {self.prefix + k for k in pairs}
        deletes = [{"KV": {"Verb": "delete", "Key": key}} for key in sorted(stale)]
        for batch in (sets, deletes):
            for start in range(0, len(batch), _TXN_MAX):
                await self._txn(client, batch[start : start + _TXN_MAX])

    async def _txn(self, client: Consul, operations: list[dict[str, Any]]) -> None:
        outcome = await client.txn(f"writing {self.prefix!r}", operations)
        if not outcome.ok:
            raise BadRequest(f"consul at {client.address} rejected the write to {self.prefix!r}: {outcome.errors}")

    async def watch(self) -> SourceWatcher:
        """A watcher of later changes under ``prefix`` (blocking queries); see :class:`~micro.config.SourceWatcher`."""
        index, entries = await self._fetch()
        try:
            baseline: str | None = self._decode(entries).checksum
        except MalformedConfig:
            baseline = None
        watcher = _ConsulWatcher(self, index, baseline)
        self._watchers.add(watcher)
        return watcher


class _ConsulWatcher(SourceWatcher):
    def __init__(self, source: ConsulSource, index: str, delivered: str | None) -> None:
        self._source = source
        self._index = index
        self._delivered = delivered
        self._stopping = asyncio.Event()

    async def __anext__(self) -> ChangeSet:
        source = self._source
        while True:
            if self._stopping.is_set():
                raise StopAsyncIteration
            fetch = asyncio.ensure_future(source._fetch(index=self._index, wait=source.options.watch_wait))
            stopping = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                if not fetch.done():
                    fetch.cancel()
            if self._stopping.is_set():
                if fetch.done() and not fetch.cancelled():
                    fetch.exception()  # retrieved, so an error of a request nobody waits for is not logged
                raise StopAsyncIteration
            found, entries = fetch.result()  # BackendUnavailable propagates; the next call tries again
            if found == self._index:
                continue  # the wait ran out with nothing changed
            # Consul's index can go backwards (a snapshot restore): start over from 0, as its docs say.
            self._index = found if _as_int(found) >= _as_int(self._index) else "0"
            changeset = source._decode(entries)  # a bad edit raises MalformedConfig; the next call resumes
            if changeset.checksum == self._delivered:
                continue
            self._delivered = changeset.checksum
            return changeset

    async def stop(self) -> None:
        self._stopping.set()
        self._source._watchers.discard(self)


def _as_int(index: str) -> int:
    try:
        return int(index)
    except ValueError:
        return 0
