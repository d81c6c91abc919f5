"""The zero-configuration default: every process of a user on one machine shares one SQLite file.

Two services started on the same machine find each other without a server or
any setting. The file lives in a private per-user directory::

    $XDG_RUNTIME_DIR/micro/registry.db        (a tmpfs, cleared at logout/boot), else
    <tempdir>/micro-<uid>/registry.db         (e.g. /tmp/micro-1000/registry.db)

overridable with ``path`` (``MICRO_REGISTRY_PATH``) or ``address``. The
directory is created with mode 0700 and the file (so its ``-wal`` and ``-shm``
too) with 0600; a directory or file that is a symlink or another user's is
refused, and a squatted ``/tmp/micro-<uid>`` falls back to a private directory
in the user's home (see :mod:`micro._private`).

The database runs in WAL mode, so readers never wait for writers, and every
write is one short ``BEGIN IMMEDIATE`` transaction that waits up to
``options.timeout`` for the lock: any number of processes can register at once.
Each node row carries its expiry time; lapsed rows are invisible to reads and
deleted by the next write. Watchers poll ``PRAGMA data_version`` (which changes
whenever another connection commits) every ``poll_interval`` and diff what
they see, so changes from any process, and expiries, reach every watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import orjson

from .._private import runtime_dir
from .._sqlite import prepare, retry_locked
from ..errors import BackendUnavailable, MicroError, ServiceNotFound
from .base import Endpoint, Node, Registry, Service, Watcher
from .options import LocalRegistryOptions
from .watch import View, Watchers, check_name, check_ttl, diff_views

__all__ = ["LocalRegistry", "default_path"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    service   TEXT NOT NULL,
    version   TEXT NOT NULL,
    metadata  TEXT NOT NULL,
    endpoints TEXT NOT NULL,
    PRIMARY KEY (service, version)
);
CREATE TABLE IF NOT EXISTS nodes (
    service TEXT NOT NULL,
    version TEXT NOT NULL,
    id      TEXT NOT NULL,
    node    TEXT NOT NULL,
    expires REAL,
    PRIMARY KEY (service, version, id)
);
CREATE INDEX IF NOT EXISTS nodes_expires ON nodes (expires) WHERE expires IS NOT NULL;
"""

_SELECT = """
SELECT n.service, n.version, n.node, n.expires, v.metadata, v.endpoints
FROM nodes n JOIN versions v ON v.service = n.service AND v.version = n.version
WHERE (n.expires IS NULL OR n.expires > ?) {where}
ORDER BY n.service, n.version, n.id
"""


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the ``local`` registry keeps its file when no path is configured; the directory is made private.

    ``runtime_dir()/registry.db``: see :func:`micro._private.runtime_dir` for the
    fallback when ``<tempdir>/micro-<uid>`` was created by someone else.
    """
    return runtime_dir(environ) / "registry.db"


def _read_view(conn: sqlite3.Connection, service: str | None = None) -> tuple[dict[tuple[str, str], Service], float]:
    """Live services (nodes sorted by id) and the time the first of their nodes expires (``inf``: never)."""
    now = time.time()
    where, args = ("AND n.service = ?", (now, service)) if service else ("", (now,))
    view: dict[tuple[str, str], Service] = {}
    next_expiry = math.inf
    for name, version, node, expires, metadata, endpoints in conn.execute(_SELECT.format(where=where), args):
        key = (name, version)
        entry = view.get(key)
        if entry is None:
            entry = view[key] = Service(
                name,
                version,
                orjson.loads(metadata),
                [Endpoint.from_dict(e) for e in orjson.loads(endpoints)],
            )
        entry.nodes.append(Node.from_dict(orjson.loads(node)))
        if expires is not None and expires < next_expiry:
            next_expiry = expires
    return view, next_expiry


class LocalRegistry(Registry):
    """Services shared by every process of this user on this machine, through a SQLite file.

    See the module docstring for where the file lives and how concurrent writers
    and watchers work. Nodes registered without a ttl stay until deregistered,
    even if their process dies: servers should register with a ttl and refresh it.
    """

    options_type: ClassVar[type[LocalRegistryOptions]] = LocalRegistryOptions
    options: LocalRegistryOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"ttl", "watch"})

    def __init__(self, options: LocalRegistryOptions | None = None) -> None:
        super().__init__(options)
        opts = self.options
        self._default = opts.path is None and not opts.address
        if opts.path is not None:
            self._path = Path(opts.path).expanduser()
        elif opts.address:
            self._path = Path(opts.address[0]).expanduser()
        else:
            self._path = default_path()
        # One connection for the threads that run reads and writes, one for the watch poller:
        # data_version only moves for commits made by *other* connections, our own writes included.
        self._conn: sqlite3.Connection | None = None
        self._poll_conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._watchers = Watchers()
        self._view: View = {}
        self._next_expiry = math.inf
        self._poller: asyncio.Task[None] | None = None

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    # -- lifecycle ------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        prepare(self._path, default=self._default)
        conn = sqlite3.connect(self._path, timeout=self.options.timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.options.timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> sqlite3.Connection:
        with self._lock:
            if self._conn is None:
                self._conn = _guard(lambda: retry_locked(self._connect, self.options.timeout), self._path)
            return self._conn

    async def start(self) -> None:
        """Create the directory and the database if needed. Idempotent."""
        await asyncio.to_thread(self._open)

    async def close(self) -> None:
        """Stop watchers and close the database; registered nodes stay. Idempotent."""
        await self._watchers.stop_all()
        await self._stop_poller()
        with self._poll_lock:
            if self._poll_conn is not None:
                self._poll_conn.close()
                self._poll_conn = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            conn = self._open()
            with self._lock:
                return _guard(lambda: work(conn), self._path)

        return await asyncio.to_thread(call)

    # -- the interface --------------------------------------------------------------------------

    async def register(self, service: Service, *, ttl: float | None = None) -> None:
        service.validate()
        lifetime = check_ttl(ttl, self.options.ttl)
        data = service.to_dict()
        metadata = orjson.dumps(data["metadata"]).decode()
        endpoints = orjson.dumps(data["endpoints"]).decode()

        def work(conn: sqlite3.Connection) -> None:
            now = time.time()
            expires = None if lifetime is None else now + lifetime
            with _transaction(conn):
                _prune(conn, now)
                if not service.nodes:
                    conn.execute(
                        "UPDATE versions SET metadata = ?, endpoints = ? WHERE service = ? AND version = ?",
                        (metadata, endpoints, service.name, service.version),
                    )
                    return
                conn.execute(
                    "INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?)",
                    (service.name, service.version, metadata, endpoints),
                )
                conn.executemany(
                    "INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?, ?)",
                    [
                        (service.name, service.version, node["id"], orjson.dumps(node).decode(), expires)
                        for node in data["nodes"]
                    ],
                )

        await self._run(work)

    async def deregister(self, service: Service) -> None:
        name = check_name(service.name)
        ids = [(name, service.version, node.id) for node in service.nodes]

        def work(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany("DELETE FROM nodes WHERE service = ? AND version = ? AND id = ?", ids)
                _prune(conn, time.time())

        if ids:
            await self._run(work)

    async def get_service(self, name: str) -> list[Service]:
        check_name(name)
        view, _ = await self._run(lambda conn: _read_view(conn, name))
        if not view:
            raise ServiceNotFound(f"service {name!r} not found", id="registry")
        return list(view.values())

    async def list_services(self) -> list[Service]:
        view, _ = await self._run(_read_view)
        return list(view.values())

    def watch(self, service: str | None = None) -> Watcher:
        if service is not None:
            check_name(service)
        loop = asyncio.get_running_loop()
        if self._poller is None or self._poller.done():
            # The baseline must be read before returning, or a change made right after watch()
            # could be folded into it and never reported. WAL reads do not wait for writers.
            version, self._view, self._next_expiry = self._poll_once(-1)
            self._poller = loop.create_task(self._poll(version), name=f"micro-registry-watch:{self._path}")
        return self._watchers.add(service)

    # -- watching -------------------------------------------------------------------------------

    def _poll_once(self, version: int) -> tuple[int, View, float]:
        """``(data_version, view, next_expiry)``; the view is re-read only if the data or the clock moved."""

        def work() -> tuple[int, View, float]:
            if self._poll_conn is None:
                self._poll_conn = self._connect()
            current = _data_version(self._poll_conn)
            if current == version and time.time() < self._next_expiry:
                return current, self._view, self._next_expiry
            view, next_expiry = _read_view(self._poll_conn)
            return current, view, next_expiry

        with self._poll_lock:
            return _guard(work, self._path)

    async def _poll(self, version: int) -> None:
        interval = self.options.poll_interval
        while self._watchers:
            await asyncio.sleep(interval)
            if not self._watchers:
                break
            try:
                version, view, self._next_expiry = await asyncio.to_thread(self._poll_once, version)
            except MicroError as exc:
                self._watchers.fail(exc)
                break
            if view is not self._view:
                results = diff_views(self._view, view)
                self._view = view
                self._watchers.publish(results)

    async def _stop_poller(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None and not poller.done():
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller


def _data_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA data_version").fetchone()
    return int(row[0])


def _prune(conn: sqlite3.Connection, now: float) -> None:
    conn.execute("DELETE FROM nodes WHERE expires IS NOT NULL AND expires <= ?", (now,))
    conn.execute(
        "DELETE FROM versions WHERE NOT EXISTS "
        "(SELECT 1 FROM nodes n WHERE n.service = versions.service AND n.version = versions.version)"
    )


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _guard(work: Callable[[], T], path: Path) -> T:
    """Run ``work``, translating sqlite and file-system errors into BackendUnavailable."""
    try:
        return work()
    except (sqlite3.Error, OSError, ValueError) as exc:
        raise BackendUnavailable(f"local registry {path}: {exc}", id="registry") from exc
