"""The ``local`` registry: zero-configuration discovery across processes through one SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import micro
import pytest
from micro.errors import BackendUnavailable, InvalidOption
from micro.registry import Endpoint, LocalRegistryOptions, Node, Service, Value
from micro.registry.local import LocalRegistry, default_path

from .conftest import next_result

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private XDG runtime directory, as a desktop session has; no MICRO_* variable is set."""
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(directory))
    for key in list(os.environ):
        if key.startswith("MICRO_"):
            monkeypatch.delenv(key)
    return directory


async def run_python(code: str, *, timeout: float = 30.0) -> str:
    """Run ``code`` in a new interpreter with this process's environment; return its stdout."""
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(code),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_two_processes_find_each_other_with_zero_configuration(runtime_dir: Path, unique: str) -> None:
    registry = micro.create("registry")
    assert isinstance(registry, LocalRegistry)
    assert registry.path == runtime_dir / "micro" / "registry.db"
    async with registry:
        await registry.register(Service(unique + ".parent", nodes=[Node("p1", "127.0.0.1:1111")]))
        out = await run_python(
            f"""
            import asyncio, json, micro
            from micro.registry import Node, Service

            async def main():
                async with micro.create("registry") as registry:
                    await registry.register(Service({unique!r} + ".child", nodes=[Node("c1", "127.0.0.1:2222")]))
                    found = await registry.get_service({unique!r} + ".parent")
                    print(json.dumps([s.to_dict() for s in found]))

            asyncio.run(main())
            """
        )
        (seen_by_child,) = [Service.from_dict(d) for d in json.loads(out)]
        assert [(n.id, n.address) for n in seen_by_child.nodes] == [("p1", "127.0.0.1:1111")]
        (child,) = await registry.get_service(unique + ".child")
        assert [(n.id, n.address) for n in child.nodes] == [("c1", "127.0.0.1:2222")]
    mode = stat.S_IMODE((runtime_dir / "micro").stat().st_mode)
    assert mode == 0o700


async def test_concurrent_writers_in_two_processes(tmp_path: Path, unique: str) -> None:
    path = tmp_path / "shared.db"
    writer = """
        import asyncio, sys
        from micro.registry import LocalRegistryOptions, Node, Service
        from micro.registry.local import LocalRegistry

        async def main(prefix):
            registry = LocalRegistry(LocalRegistryOptions(path={path!r}))
            for i in range(100):
                await registry.register(Service({unique!r}, nodes=[Node(f"{{prefix}}{{i:03}}", "127.0.0.1:1")]), ttl=60)
                if i % 10 == 0:
                    await registry.deregister(Service({unique!r}, nodes=[Node(f"{{prefix}}{{i:03}}", "")]))
            await registry.close()

        asyncio.run(main({prefix!r}))
    """
    async with LocalRegistry(LocalRegistryOptions(path=str(path))) as registry:
        await registry.start()
        await asyncio.gather(
            *(run_python(writer.format(path=str(path), unique=unique, prefix=p)) for p in ("a", "b")),
        )
        (found,) = await registry.get_service(unique)
    expected = sorted(f"{p}{i:03}" for p in "ab" for i in range(100) if i % 10)
    assert [n.id for n in found.nodes] == expected


async def test_watch_sees_changes_made_by_another_process(tmp_path: Path, unique: str) -> None:
    path = str(tmp_path / "watched.db")
    options = LocalRegistryOptions(path=path, poll_interval=0.02)
    async with LocalRegistry(options) as registry, registry.watch(unique) as watcher:
        await run_python(
            f"""
            import asyncio
            from micro.registry import LocalRegistryOptions, Node, Service
            from micro.registry.local import LocalRegistry

            async def main():
                async with LocalRegistry(LocalRegistryOptions(path={path!r})) as registry:
                    await registry.register(Service({unique!r}, nodes=[Node("x", "127.0.0.1:3")]))

            asyncio.run(main())
            """
        )
        result = await next_result(watcher, timeout=5)
        assert result.action == "create"
        assert [n.id for n in result.service.nodes] == ["x"]


def test_default_path_prefers_the_runtime_dir(tmp_path: Path) -> None:
    assert default_path({"XDG_RUNTIME_DIR": str(tmp_path)}) == tmp_path / "micro" / "registry.db"
    fallback = default_path({"XDG_RUNTIME_DIR": str(tmp_path / "missing")})
    assert fallback.name == "registry.db"
    assert fallback.parent.name == f"micro-{os.getuid()}"


def test_path_comes_from_path_then_address(tmp_path: Path) -> None:
    assert LocalRegistry(LocalRegistryOptions(path=str(tmp_path / "a.db"))).path == tmp_path / "a.db"
    assert LocalRegistry(LocalRegistryOptions(address=(str(tmp_path / "b.db"),))).path == tmp_path / "b.db"
    created = micro.create("registry", "local", environ={"MICRO_REGISTRY_PATH": str(tmp_path / "c.db")})
    assert created.path == tmp_path / "c.db"


def test_bad_options_are_refused() -> None:
    with pytest.raises(InvalidOption, match="poll_interval"):
        LocalRegistryOptions(poll_interval=0)
    with pytest.raises(InvalidOption, match="path"):
        LocalRegistryOptions(path=" ")
    with pytest.raises(InvalidOption, match="MICRO_REGISTRY_TTL"):
        micro.create("registry", "local", environ={"MICRO_REGISTRY_TTL": "-5s"})


async def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    registry = LocalRegistry(LocalRegistryOptions(path=str(shared / "r.db")))
    with pytest.raises(BackendUnavailable, match="writable by other users"):
        await registry.start()
    with pytest.raises(BackendUnavailable):
        await registry.get_service("x")


async def test_a_file_that_is_not_a_database_raises_backend_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    registry = LocalRegistry(LocalRegistryOptions(path=str(path)))
    with pytest.raises(BackendUnavailable, match=r"garbage\.db"):
        await registry.register(Service("x", nodes=[Node("a", "127.0.0.1:1")]))
    with pytest.raises(BackendUnavailable):
        registry.watch()
    await registry.close()


async def test_expired_rows_are_pruned_by_the_next_write(tmp_path: Path, unique: str) -> None:
    path = tmp_path / "prune.db"
    async with LocalRegistry(LocalRegistryOptions(path=str(path))) as registry:
        await registry.register(Service(unique, nodes=[Node("old", "127.0.0.1:1")]), ttl=0.05)
        await asyncio.sleep(0.06)
        await registry.register(Service(unique + ".other", nodes=[Node("new", "127.0.0.1:2")]))
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT service, id FROM nodes ORDER BY id").fetchall()
        versions = conn.execute("SELECT service FROM versions").fetchall()
    conn.close()
    assert rows == [(unique + ".other", "new")]
    assert versions == [(unique + ".other",)]


# -- cost per change, not per registry size (issue #17) ------------------------------------------


class Trace:
    """Every SQL statement run by connections opened while it is installed, with whether the loop thread ran it."""

    def __init__(self) -> None:
        self.statements: list[tuple[bool, str]] = []

    def connect(self, real: Any) -> Any:
        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = real(*args, **kwargs)
            conn.set_trace_callback(
                lambda sql: self.statements.append((threading.current_thread() is threading.main_thread(), sql))
            )
            return conn

        return connect

    def full_reads(self, *, on_loop: bool | None = None) -> list[str]:
        """Reads of every service's nodes (the select joining nodes and versions with no service named)."""
        return [
            sql
            for loop, sql in self.statements
            if "JOIN versions" in sql and "n.service =" not in sql and (on_loop is None or loop == on_loop)
        ]

    def service_reads(self) -> list[str]:
        return [sql for _, sql in self.statements if "JOIN versions" in sql and "n.service =" in sql]


@pytest.fixture
def trace(monkeypatch: pytest.MonkeyPatch) -> Trace:
    tracer = Trace()
    monkeypatch.setattr(sqlite3, "connect", tracer.connect(sqlite3.connect))
    return tracer


def big_service(name: str, node: str = "n", version: str = "1.0") -> Service:
    request = Value("Request", "Request", [Value("name", "string")])
    endpoints = [Endpoint(f"Handler.M{i}", request, request) for i in range(3)]
    return Service(name, version, {"team": "t"}, endpoints, [Node(node, "127.0.0.1:1", {"k": "v"})])


async def fill(path: Path, prefix: str, count: int, *, ttl: float | None = 600.0) -> None:
    async with LocalRegistry(LocalRegistryOptions(path=str(path))) as registry:
        for i in range(count):
            await registry.register(big_service(f"{prefix}-{i}", f"n{i}"), ttl=ttl)


async def baseline_read(trace: Trace) -> None:
    """Wait until the watcher has read its baseline (the one whole-registry read it may make)."""
    for _ in range(500):
        if trace.full_reads():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the watcher never read its baseline")


async def test_a_change_from_another_process_re_reads_only_that_service(
    tmp_path: Path, unique: str, trace: Trace
) -> None:
    path = tmp_path / "r.db"
    await fill(path, unique, 200)
    async with LocalRegistry(LocalRegistryOptions(path=str(path))) as registry, registry.watch() as watcher:
        await baseline_read(trace)
        await run_python(
            f"""
            import asyncio
            from micro.registry import LocalRegistryOptions, Node, Service
            from micro.registry.local import LocalRegistry

            async def main():
                async with LocalRegistry(LocalRegistryOptions(path={str(path)!r})) as registry:
                    await registry.register(Service({unique!r} + "-new", nodes=[Node("x", "127.0.0.1:3")]))

            asyncio.run(main())
            """
        )
        result = await next_result(watcher, timeout=10)
        assert (result.action, result.service.name, [n.id for n in result.service.nodes]) == (
            "create",
            unique + "-new",
            ["x"],
        )
    assert len(trace.full_reads()) == 1, "the change was found by reading every service again"
    assert all("-new'" in sql for sql in trace.service_reads())


async def test_heartbeats_of_1000_nodes_are_not_changes(tmp_path: Path, unique: str, trace: Trace) -> None:
    path = tmp_path / "r.db"
    await fill(path, unique, 1000)
    options = LocalRegistryOptions(path=str(path))
    async with LocalRegistry(options) as writer, LocalRegistry(options) as registry, registry.watch() as watcher:
        await baseline_read(trace)
        for i in range(1000):
            await writer.register(big_service(f"{unique}-{i}", f"n{i}"), ttl=600)
        # A real change after the heartbeats: once it is reported, the heartbeats were looked at.
        await writer.register(big_service(unique + "-sentinel"))
        result = await next_result(watcher, timeout=10)
        assert (result.action, result.service.name) == ("create", unique + "-sentinel")
    assert len(trace.full_reads()) == 1, "heartbeats made the watcher read every service again"
    reread = trace.service_reads()
    assert reread, "the sentinel was never read"
    assert all("-sentinel'" in sql for sql in reread), reread[:3]


async def test_an_idle_watcher_of_1000_services_costs_little_cpu_while_nodes_heartbeat(
    tmp_path: Path, unique: str, trace: Trace
) -> None:
    path = tmp_path / "r.db"
    await fill(path, unique, 1000)
    heartbeats = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(
            f"""
            import asyncio, time
            from micro.registry import LocalRegistryOptions, Service
            from micro.registry.local import LocalRegistry

            async def main():
                async with LocalRegistry(LocalRegistryOptions(path={str(path)!r})) as registry:
                    (template,) = await registry.get_service({unique!r} + "-0")
                    deadline = time.monotonic() + 60
                    i = 0
                    while time.monotonic() < deadline:
                        # The very service fill() registered, again: a heartbeat.
                        data = template.to_dict()
                        data["name"] = f"{unique}-{{i % 1000}}"
                        data["nodes"][0]["id"] = f"n{{i % 1000}}"
                        await registry.register(Service.from_dict(data), ttl=600)
                        if i == 0:
                            print("ready", flush=True)
                        i += 1
                        await asyncio.sleep(0.005)

            asyncio.run(main())
            """
        ),
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )
    try:
        assert heartbeats.stdout is not None
        assert await asyncio.wait_for(heartbeats.stdout.readline(), 30) == b"ready\n"
        async with LocalRegistry(LocalRegistryOptions(path=str(path))) as registry, registry.watch():
            await baseline_read(trace)
            wall, cpu = time.monotonic(), time.process_time()
            await asyncio.sleep(3.0)
            used, elapsed = time.process_time() - cpu, time.monotonic() - wall
    finally:
        heartbeats.kill()
        await heartbeats.wait()
    # Re-reading 1,000 services ten times a second takes a good part of a core; looking at the
    # change log ten times a second about 1%. The bound is loose for a loaded machine.
    assert used < 0.1 * elapsed, f"{used:.2f}s of CPU in {elapsed:.2f}s"
    assert len(trace.full_reads()) == 1


async def test_an_expiry_reaches_watchers_without_reading_everything(tmp_path: Path, unique: str, trace: Trace) -> None:
    path = tmp_path / "r.db"
    await fill(path, unique, 1000, ttl=None)
    options = LocalRegistryOptions(path=str(path), poll_interval=0.02)
    async with LocalRegistry(options) as registry, registry.watch(unique + "-short") as watcher:
        await registry.register(big_service(unique + "-short", "s"), ttl=0.5)
        await baseline_read(trace)
        first = await next_result(watcher, timeout=10)
        if first.action == "create":  # registered after the watch began: reported too
            first = await next_result(watcher, timeout=10)
        assert (first.action, first.service.name, [n.id for n in first.service.nodes]) == (
            "delete",
            unique + "-short",
            ["s"],
        )
    assert len(trace.full_reads()) == 1, "the expiry was found by reading every service again"


async def test_first_lookup_of_1000_services_reads_only_that_service(tmp_path: Path, unique: str, trace: Trace) -> None:
    from micro.selector.cache import RandomSelector

    path = tmp_path / "r.db"
    await fill(path, unique, 1000)
    trace.statements.clear()
    registry = LocalRegistry(LocalRegistryOptions(path=str(path)))
    selector = RandomSelector(registry=registry)
    try:
        await registry.start()
        node = (await selector.select(f"{unique}-500"))()
        assert node.id == "n500"
        on_loop = [sql for loop, sql in trace.statements if loop]
        assert not trace.full_reads(on_loop=True), "the event loop read the whole registry"
        (lookup,) = trace.service_reads()
        with sqlite3.connect(path) as conn:
            plan = " ".join(str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + lookup))
        conn.close()
        assert "SEARCH n USING INDEX" in plan, plan
        assert "SCAN" not in plan, plan
        assert all("nodes" not in sql or "service" in sql for sql in on_loop), on_loop
    finally:
        await selector.close()
        await registry.close()


async def test_deregistering_the_last_node_removes_its_version_row(tmp_path: Path, unique: str) -> None:
    path = tmp_path / "r.db"
    async with LocalRegistry(LocalRegistryOptions(path=str(path))) as registry:
        await registry.register(big_service(unique, "a", version="1"))
        await registry.register(big_service(unique, "b", version="2"))
        await registry.deregister(big_service(unique, "a", version="1"))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT service, version FROM versions").fetchall() == [(unique, "2")]
    conn.close()


async def test_an_expiry_brought_forward_by_a_new_ttl_still_reaches_watchers(tmp_path: Path, unique: str) -> None:
    options = LocalRegistryOptions(path=str(tmp_path / "r.db"), poll_interval=0.02)
    async with LocalRegistry(options) as registry:
        await registry.register(big_service(unique, "a"), ttl=600)
        async with registry.watch(unique) as watcher:
            await registry.register(big_service(unique, "a"), ttl=0.3)  # same node, earlier expiry
            result = await next_result(watcher, timeout=10)
            assert (result.action, [n.id for n in result.service.nodes]) == ("delete", ["a"])
            await registry.register(big_service(unique, "a"), ttl=600)  # back after it lapsed
            result = await next_result(watcher, timeout=10)
            assert (result.action, [n.id for n in result.service.nodes]) == ("create", ["a"])


async def test_a_watcher_behind_the_trimmed_log_reads_everything_once(
    tmp_path: Path, unique: str, trace: Trace
) -> None:
    path = str(tmp_path / "r.db")
    # A poll interval of an hour: after its baseline the watcher polls only when the test says so.
    slow = LocalRegistryOptions(path=path, poll_interval=3600, log_size=10)
    async with LocalRegistry(LocalRegistryOptions(path=path, log_size=10)) as writer, LocalRegistry(slow) as registry:
        await writer.register(big_service(unique + "-gone", "g"))
        watcher = registry.watch()
        await baseline_read(trace)
        await writer.deregister(big_service(unique + "-gone", "g"))
        for i in range(40):
            await writer.register(big_service(f"{unique}-{i:02}", f"n{i}"))
        with sqlite3.connect(path) as conn:
            kept = conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
            horizon = conn.execute("SELECT value FROM meta WHERE key = 'horizon'").fetchone()[0]
        conn.close()
        assert kept <= 10 + 10 // 4 + 2  # trimmed in batches, two entries per registration
        assert horizon > 0
        results = await asyncio.to_thread(registry._poll_once)
        await watcher.stop()
    assert [(r.action, r.service.name) for r in results] == [("create", f"{unique}-{i:02}") for i in range(40)] + [
        ("delete", unique + "-gone")
    ]
    assert len(trace.full_reads()) == 2  # the baseline, and once after falling behind


async def test_a_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    async with LocalRegistry(LocalRegistryOptions(path=str(path))) as registry:
        await registry.start()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    registry = LocalRegistry(LocalRegistryOptions(path=str(path)))
    with pytest.raises(BackendUnavailable, match=r"schema version 99, newer than this micro's 1"):
        await registry.register(Service("x", nodes=[Node("a", "127.0.0.1:1")]))
    await registry.close()


# What micro wrote before the change log (schema 0), statement for statement: a process still
# running that version keeps writing the file after a newer one upgraded it.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (service TEXT NOT NULL, version TEXT NOT NULL, metadata TEXT NOT NULL,
    endpoints TEXT NOT NULL, PRIMARY KEY (service, version));
CREATE TABLE IF NOT EXISTS nodes (service TEXT NOT NULL, version TEXT NOT NULL, id TEXT NOT NULL, node TEXT NOT NULL,
    expires REAL, PRIMARY KEY (service, version, id));
CREATE INDEX IF NOT EXISTS nodes_expires ON nodes (expires) WHERE expires IS NOT NULL;
"""


def old_register(path: Path, service: Service, expires: float | None) -> None:
    data = service.to_dict()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(OLD_SCHEMA)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM nodes WHERE expires IS NOT NULL AND expires <= ?", (time.time(),))
        conn.execute(
            "DELETE FROM versions WHERE NOT EXISTS "
            "(SELECT 1 FROM nodes n WHERE n.service = versions.service AND n.version = versions.version)"
        )
        conn.execute(
            "INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?)",
            (service.name, service.version, json.dumps(data["metadata"]), json.dumps(data["endpoints"])),
        )
        for node in data["nodes"]:
            conn.execute(
                "INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?, ?)",
                (service.name, service.version, node["id"], json.dumps(node), expires),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()


async def test_a_file_of_the_old_schema_is_upgraded_and_old_writers_are_still_seen(tmp_path: Path, unique: str) -> None:
    path = tmp_path / "old.db"
    old_register(path, big_service(unique, "a"), None)
    options = LocalRegistryOptions(path=str(path), poll_interval=0.02)
    async with LocalRegistry(options) as registry:
        (found,) = await registry.get_service(unique)
        assert [n.id for n in found.nodes] == ["a"]
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (1,)
        conn.close()
        async with registry.watch(unique) as watcher:
            # The old code's heartbeat (INSERT OR REPLACE of the same rows) is no change...
            old_register(path, big_service(unique, "a"), time.time() + 600)
            # ...and its new node is one: triggers log the old code's writes too.
            await asyncio.to_thread(old_register, path, big_service(unique, "b"), time.time() + 600)
            result = await next_result(watcher, timeout=10)
            assert (result.action, [n.id for n in result.service.nodes]) == ("update", ["a", "b"])
