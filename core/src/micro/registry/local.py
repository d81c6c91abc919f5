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
deleted by the next write.

What a client pays does not grow with the registry:

* A lookup (``get_service``) is one indexed query for that service.
* A heartbeat (registering a node again unchanged) only moves the node's
  expiry, an indexed update; it is not a change and watchers are not told.
* Every change of a node or a service version appends ``(seq, service)`` to the
  ``changes`` table, from triggers in the same transaction (so writers of any
  version log their changes). Watchers poll ``PRAGMA data_version`` (on a thread) every
  ``poll_interval``, one tiny query that changes whenever another connection
  commits; when it moves they read the log past the last sequence number they
  saw and re-read only the services it names (an indexed query each). When the
  registry is idle a poll is that one query.
* Expiries are found without scanning: the watcher knows the earliest expiry in
  the file (an indexed ``MIN``), and at that time, or after any commit, asks,
  again by index, which nodes lapsed since it last looked. A heartbeat that
  pushes an expiry back only costs a wasted wake-up, never a missed expiry.
* Writers trim the log to ``log_size`` entries and ``log_age`` seconds, and
  record the highest sequence number removed; a watcher that fell behind it
  (a process stopped for minutes) reads the whole registry once instead.

The file carries its schema version (``PRAGMA user_version``); an older file is
upgraded on open (the new tables and triggers are added, the existing rows are
kept), and a file from a newer, unknown schema is refused with
:class:`~micro.errors.BackendUnavailable` rather than written to.
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
from ..errors import BackendUnavailable, MicroError
from .base import Endpoint, Node, Registry, Result, Service, Watcher
from .options import LocalRegistryOptions
from .watch import View, Watchers, diff_views

__all__ = ["SCHEMA_VERSION", "LocalRegistry", "default_path"]

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

#: The schema this code reads and writes (``PRAGMA user_version``); 0 is the file before the change log.
SCHEMA_VERSION = 1

# The wall clock in SQL, as time.time() gives it (julianday has millisecond precision).
_NOW_SQL = "((julianday('now') - 2440587.5) * 86400.0)"

# Schema 1: the change log, filled by triggers so that every writer logs, whatever its code.
# A node update is a change unless only its expiry moved later (a heartbeat); an expiry moved
# earlier, or set on a node that had none or had lapsed, is logged so watchers re-arm their timer.
_CHANGE_LOG = [
    "CREATE TABLE IF NOT EXISTS changes"
    " (seq INTEGER PRIMARY KEY AUTOINCREMENT, service TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    f"""CREATE TRIGGER IF NOT EXISTS changes_node_insert AFTER INSERT ON nodes BEGIN
        INSERT INTO changes (service, at) VALUES (NEW.service, {_NOW_SQL}); END""",
    f"""CREATE TRIGGER IF NOT EXISTS changes_node_delete AFTER DELETE ON nodes BEGIN
        INSERT INTO changes (service, at) VALUES (OLD.service, {_NOW_SQL}); END""",
    f"""CREATE TRIGGER IF NOT EXISTS changes_node_update AFTER UPDATE ON nodes
        WHEN OLD.node IS NOT NEW.node OR OLD.service IS NOT NEW.service OR OLD.version IS NOT NEW.version
          OR OLD.id IS NOT NEW.id
          OR (NEW.expires IS NOT NULL AND (OLD.expires IS NULL OR NEW.expires < OLD.expires
                                           OR OLD.expires <= {_NOW_SQL}))
        BEGIN
        INSERT INTO changes (service, at) VALUES (NEW.service, {_NOW_SQL});
        INSERT INTO changes (service, at) SELECT OLD.service, {_NOW_SQL} WHERE OLD.service IS NOT NEW.service;
        END""",
    f"""CREATE TRIGGER IF NOT EXISTS changes_version_insert AFTER INSERT ON versions BEGIN
        INSERT INTO changes (service, at) VALUES (NEW.service, {_NOW_SQL}); END""",
    f"""CREATE TRIGGER IF NOT EXISTS changes_version_delete AFTER DELETE ON versions BEGIN
        INSERT INTO changes (service, at) VALUES (OLD.service, {_NOW_SQL}); END""",
    f"""CREATE TRIGGER IF NOT EXISTS changes_version_update AFTER UPDATE ON versions
        WHEN OLD.metadata IS NOT NEW.metadata OR OLD.endpoints IS NOT NEW.endpoints
          OR OLD.service IS NOT NEW.service OR OLD.version IS NOT NEW.version
        BEGIN
        INSERT INTO changes (service, at) VALUES (NEW.service, {_NOW_SQL});
        INSERT INTO changes (service, at) SELECT OLD.service, {_NOW_SQL} WHERE OLD.service IS NOT NEW.service;
        END""",
]

# What a watcher keeps of a service: its live rows as stored, without the expiry (which heartbeats move).
_Rows = tuple[tuple[str, str, str, str], ...]

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
        #: The thread that polls for changes while there are watchers, and the event that stops it.
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        # Guards starting the poller against it deciding to exit (no watchers left) at the same time.
        self._poller_lock = threading.Lock()
        #: What the watchers last saw: service name -> its live rows (without expiries).
        self._state: dict[str, _Rows] = {}
        #: The last change-log entry applied to ``_state``.
        self._seq = 0
        #: ``PRAGMA data_version`` when the poller last looked (-1: look at the log now).
        self._data_version = -1
        #: Expiries up to this wall-clock time are reflected in ``_state``.
        self._checked = 0.0
        #: The earliest expiry after ``_checked`` in the file, when last asked (may be earlier than the true one).
        self._next_expiry = math.inf
        #: Whether the poll connection holds a read transaction opened by ``watch`` for the baseline.
        self._pinned = False

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

    def _connect_current(self) -> sqlite3.Connection:
        """A connection to a file brought up to :data:`SCHEMA_VERSION` (a newer one is refused)."""
        conn = self._connect()
        try:
            _migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> sqlite3.Connection:
        with self._lock:
            if self._conn is None:
                self._conn = _guard(lambda: retry_locked(self._connect_current, self.options.timeout), self._path)
            return self._conn

    def _open_poll(self) -> sqlite3.Connection:
        # Called with _poll_lock held.
        if self._poll_conn is None:
            self._poll_conn = retry_locked(self._connect_current, self.options.timeout)
        return self._poll_conn

    async def _start(self) -> None:
        """Create the directory and the database if needed."""
        await asyncio.to_thread(self._open)
        await asyncio.to_thread(self._start_poll)

    def _start_poll(self) -> None:
        # Opened here, off the event loop, so that watch() finds it open.
        with self._poll_lock:
            _guard(self._open_poll, self._path)

    async def _close(self) -> None:
        """Stop watchers and close the database; registered nodes stay."""
        await self._watchers.stop_all()
        await self._stop_poller()
        with self._poll_lock:
            if self._poll_conn is not None:
                self._poll_conn.close()
                self._poll_conn = None
                self._pinned = False
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

    async def _register(self, service: Service, ttl: float | None) -> None:
        data = service.to_dict()
        metadata = orjson.dumps(data["metadata"]).decode()
        endpoints = orjson.dumps(data["endpoints"]).decode()
        key = (service.name, service.version)

        def work(conn: sqlite3.Connection) -> None:
            now = time.time()
            expires = None if ttl is None else now + ttl
            with _transaction(conn):
                _prune(conn, now)
                if not service.nodes:
                    conn.execute(
                        "UPDATE versions SET metadata = ?, endpoints = ? WHERE service = ? AND version = ?",
                        (metadata, endpoints, *key),
                    )
                    return
                # Upserts, not INSERT OR REPLACE: an unchanged row is left alone, and a node whose
                # only change is a later expiry (a heartbeat) fires no change-log trigger.
                conn.execute(
                    "INSERT INTO versions VALUES (?, ?, ?, ?) ON CONFLICT (service, version) DO UPDATE SET"
                    " metadata = excluded.metadata, endpoints = excluded.endpoints"
                    " WHERE metadata IS NOT excluded.metadata OR endpoints IS NOT excluded.endpoints",
                    (*key, metadata, endpoints),
                )
                conn.executemany(
                    "INSERT INTO nodes VALUES (?, ?, ?, ?, ?) ON CONFLICT (service, version, id) DO UPDATE SET"
                    " node = excluded.node, expires = excluded.expires",
                    [(*key, node["id"], orjson.dumps(node).decode(), expires) for node in data["nodes"]],
                )
                _prune_log(conn, now, self.options.log_size, self.options.log_age)

        await self._run(work)

    async def _deregister(self, service: Service) -> None:
        name = service.name
        ids = [(name, service.version, node.id) for node in service.nodes]

        def work(conn: sqlite3.Connection) -> None:
            now = time.time()
            with _transaction(conn):
                conn.executemany("DELETE FROM nodes WHERE service = ? AND version = ? AND id = ?", ids)
                _drop_empty_versions(conn, [(name, service.version)])
                _prune(conn, now)
                _prune_log(conn, now, self.options.log_size, self.options.log_age)

        if ids:
            await self._run(work)

    async def _get_service(self, name: str) -> list[Service]:
        view, _ = await self._run(lambda conn: _read_view(conn, name))
        return list(view.values())

    async def _list_services(self) -> list[Service]:
        view, _ = await self._run(_read_view)
        return list(view.values())

    def _watch(self, service: str | None) -> Watcher:
        loop = asyncio.get_running_loop()
        with self._poller_lock:
            watcher = self._watchers.add(service)
            if self._poller is None:
                # The baseline must be as of now, or a change made right after watch() returns could
                # be folded into it and never reported. Only a read transaction is opened here (one
                # tiny query that fixes the snapshot; WAL readers do not wait for writers); the
                # poller reads the services in it, off the event loop, then ends it.
                now = time.time()
                try:
                    with self._poll_lock:
                        _guard(lambda: self._pin(now), self._path)
                except BaseException:
                    self._watchers.discard(watcher)
                    raise
                self._stop = threading.Event()
                self._poller = threading.Thread(
                    target=self._poll, args=(loop, self._stop), name=f"micro-registry-watch:{self._path}", daemon=True
                )
                self._poller.start()
        return watcher

    # -- watching -------------------------------------------------------------------------------

    def _pin(self, now: float) -> None:
        conn = self._open_poll()
        if self._pinned:
            conn.execute("ROLLBACK")
            self._pinned = False
        conn.execute("BEGIN")
        try:
            self._seq = _last_seq(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._pinned = True
        self._checked = now

    def _poll_once(self) -> list[Result]:
        """The results of what changed since the last call (the first call reads the baseline)."""
        with self._poll_lock:
            return _guard(self._changes, self._path)

    def _changes(self) -> list[Result]:
        conn = self._open_poll()
        if self._pinned:
            try:
                self._state = self._read_all(conn, self._checked)
            finally:
                self._pinned = False
                conn.execute("COMMIT")
            self._data_version = -1  # look at the log at the next poll
            self._next_expiry = -math.inf
            return []
        version = _data_version(conn)
        now = time.time()
        if version == self._data_version and now < self._next_expiry:
            return []  # the idle case: nothing was committed and nothing lapsed
        self._data_version = version
        conn.execute("BEGIN")
        try:
            old = self._state
            if self._seq < _horizon(conn):
                # This watcher fell behind the trimmed log: read everything once.
                self._seq = _last_seq(conn)
                new = self._read_all(conn, now)
                changed = old.keys() | new.keys()
                self._state = new
            else:
                changed = set()
                for seq, name in conn.execute("SELECT seq, service FROM changes WHERE seq > ?", (self._seq,)):
                    changed.add(name)
                    self._seq = max(self._seq, seq)
                # On every commit, not only at the known next expiry: a commit may have set an
                # expiry that already passed (an indexed range query, usually empty).
                changed.update(_lapsed(conn, self._checked, now))
                new = dict(old)
                for name in changed:
                    rows = self._read_service(conn, name, now)
                    if rows:
                        new[name] = rows
                    else:
                        new.pop(name, None)
            self._checked = now
            self._next_expiry = _next_expiry(conn, now)
        finally:
            conn.execute("COMMIT")
        self._state = new
        results: list[Result] = []
        for name in sorted(changed):
            before, after = old.get(name, ()), new.get(name, ())
            if before != after:
                results += diff_views(_services(name, before), _services(name, after))
        return results

    def _read_all(self, conn: sqlite3.Connection, now: float) -> dict[str, _Rows]:
        state: dict[str, list[tuple[str, str, str, str]]] = {}
        for name, version, node, metadata, endpoints in conn.execute(_SELECT_ROWS.format(where=""), (now,)):
            state.setdefault(name, []).append((version, node, metadata, endpoints))
        return {name: tuple(rows) for name, rows in state.items()}

    def _read_service(self, conn: sqlite3.Connection, name: str, now: float) -> _Rows:
        return tuple(
            (version, node, metadata, endpoints)
            for _, version, node, metadata, endpoints in conn.execute(
                _SELECT_ROWS.format(where="AND n.service = ?"), (now, name)
            )
        )

    def _poll(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        """The poller thread: changes are looked for here and handed to the watchers on ``loop``.

        A thread of its own rather than a task that hops to a thread: an idle poll is then one
        wake-up and one tiny query, with no event-loop iteration at all.
        """
        interval = self.options.poll_interval
        wait = 0.0  # the baseline is read at once
        try:
            while not stop.wait(wait):
                wait = interval
                with self._poller_lock:
                    if not self._watchers or loop.is_closed():
                        self._poller = None
                        return
                try:
                    results = self._poll_once()
                except Exception as exc:
                    if not isinstance(exc, MicroError):  # a bug here must still end the watchers, typed
                        exc = BackendUnavailable(f"local registry {self._path}: watch failed: {exc!r}", id="registry")
                    self._hand_over(loop, stop, self._watchers.fail, exc)
                    return
                if results and not self._hand_over(loop, stop, self._watchers.publish, results):
                    return
        finally:
            with self._poller_lock:
                if self._poller is threading.current_thread():
                    self._poller = None

    def _hand_over(self, loop: asyncio.AbstractEventLoop, stop: threading.Event, fn: Any, arg: Any) -> bool:
        """Run ``fn(arg)`` on the loop; False (and the poller stops) if the loop is closed."""
        try:
            loop.call_soon_threadsafe(fn, arg)
        except RuntimeError:
            stop.set()
            return False
        return True

    async def _stop_poller(self) -> None:
        with self._poller_lock:
            poller, self._poller = self._poller, None
            self._stop.set()
        if poller is not None:
            await asyncio.to_thread(poller.join)


_SELECT_ROWS = """
SELECT n.service, n.version, n.node, v.metadata, v.endpoints
FROM nodes n JOIN versions v ON v.service = n.service AND v.version = n.version
WHERE (n.expires IS NULL OR n.expires > ?) {where}
ORDER BY n.service, n.version, n.id
"""


def _services(name: str, rows: _Rows) -> View:
    """The services of ``name`` in ``rows`` (sorted by version and node id), keyed like a registry view."""
    view: dict[tuple[str, str], Service] = {}
    for version, node, metadata, endpoints in rows:
        entry = view.get((name, version))
        if entry is None:
            entry = view[(name, version)] = Service(
                name,
                version,
                orjson.loads(metadata),
                [Endpoint.from_dict(e) for e in orjson.loads(endpoints)],
            )
        entry.nodes.append(Node.from_dict(orjson.loads(node)))
    return view


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the file up to :data:`SCHEMA_VERSION`; refuse a file of a newer schema this code cannot keep correct."""
    version = _user_version(conn)
    if version == SCHEMA_VERSION:
        return
    if version < SCHEMA_VERSION:
        with _transaction(conn):
            version = _user_version(conn)  # another process may have migrated it meanwhile
            if version < SCHEMA_VERSION:
                for statement in _CHANGE_LOG:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                return
    if version > SCHEMA_VERSION:
        raise BackendUnavailable(
            f"local registry {_file_of(conn)} has schema version {version}, newer than this micro's "
            f"{SCHEMA_VERSION}: upgrade micro in this process, or give it another file (MICRO_REGISTRY_PATH)",
            id="registry",
        )


def _file_of(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row else "?"


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _last_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
    return 0 if row is None else int(row[0])


def _horizon(conn: sqlite3.Connection) -> int:
    """The highest sequence number trimmed from the log: a watcher that saw less must read everything."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'horizon'").fetchone()
    return 0 if row is None else int(row[0])


def _lapsed(conn: sqlite3.Connection, since: float, now: float) -> list[str]:
    """Services with a node whose expiry falls in ``(since, now]`` (the expiry index, no scan)."""
    rows = conn.execute("SELECT DISTINCT service FROM nodes WHERE expires > ? AND expires <= ?", (since, now))
    return [name for (name,) in rows]


def _next_expiry(conn: sqlite3.Connection, now: float) -> float:
    row = conn.execute("SELECT MIN(expires) FROM nodes WHERE expires > ?", (now,)).fetchone()
    return math.inf if row[0] is None else float(row[0])


def _data_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA data_version").fetchone()
    return int(row[0])


def _prune(conn: sqlite3.Connection, now: float) -> None:
    """Delete lapsed nodes (by the expiry index) and the versions they leave without nodes."""
    lapsed = conn.execute(
        "DELETE FROM nodes WHERE expires IS NOT NULL AND expires <= ? RETURNING service, version", (now,)
    )
    _drop_empty_versions(conn, set(lapsed.fetchall()))


def _drop_empty_versions(conn: sqlite3.Connection, keys: list[tuple[str, str]] | set[tuple[str, str]]) -> None:
    conn.executemany(
        "DELETE FROM versions WHERE service = ?1 AND version = ?2 AND NOT EXISTS "
        "(SELECT 1 FROM nodes n WHERE n.service = ?1 AND n.version = ?2)",
        keys,
    )


def _prune_log(conn: sqlite3.Connection, now: float, size: int, age: float) -> None:
    """Trim the change log to about ``size`` entries and ``age`` seconds, in batches, and record the horizon.

    Trimming starts at 1.25 times either bound and goes back to it, so that it runs once per
    many writes rather than on each, and reads at most a bounded log.
    """
    last = _last_seq(conn)
    horizon = _horizon(conn)
    cut = horizon
    if last - horizon > size + size // 4:
        cut = last - size
    oldest = conn.execute("SELECT at FROM changes ORDER BY seq LIMIT 1").fetchone()
    if oldest is not None and oldest[0] < now - age * 1.25:
        row = conn.execute("SELECT MAX(seq) FROM changes WHERE at < ?", (now - age,)).fetchone()
        cut = max(cut, int(row[0] or 0))
    if cut > horizon:
        conn.execute("DELETE FROM changes WHERE seq <= ?", (cut,))
        conn.execute(
            "INSERT INTO meta VALUES ('horizon', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (cut,)
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
