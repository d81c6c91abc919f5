"""The ``micro`` commands as a user runs them: a separate process, against a running service and real stores.

``micro new`` (a package that passes its own tests and serves), ``micro store``, ``micro config``,
``micro subscribe``, ``micro call`` with streams from stdin, tables at 80 columns, and errors a person
can act on: a local configuration problem is one line and exit status 3, a remote error is JSON and 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "service"))
sys.path.insert(0, str(HERE))

from clirun import micro  # noqa: E402
from procs import ServiceProcess, spawner, unique_name  # noqa: E402


@pytest.fixture
async def service() -> AsyncIterator[ServiceProcess]:
    async with spawner() as spawn:
        yield await spawn(unique_name())


async def run(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120.0) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# -- micro new ------------------------------------------------------------------------------------------------


async def test_new_scaffolds_a_service_that_passes_its_own_tests_and_serves(tmp_path: Path) -> None:
    name = f"shop-{uuid.uuid4().hex[:6]}"
    status, out, err = await micro("new", name, "--directory", str(tmp_path / name))
    assert status == 0, err
    root = tmp_path / name
    package = name.replace("-", "_")
    for path in ("pyproject.toml", "README.md", f"{package}/handler.py", f"tests/test_{package}.py"):
        assert (root / path).is_file(), path
    # Its own tests, with micro.testing, pass as created.
    status, out, err = await run(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=root, env={"PYTHONPATH": str(root)}
    )
    assert status == 0, out + err
    assert "3 passed" in out
    # It serves, and `micro call` reaches it, as its README says.
    env = {"PYTHONPATH": str(root)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", package, cwd=root, env={**os.environ, **env}, stderr=asyncio.subprocess.PIPE
    )
    try:
        cls = "".join(part.capitalize() for part in name.split("-"))
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            status, out, err = await micro("call", name, f"{cls}.hello", '{"name": "Alice"}')
            if status == 0 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert status == 0, err
        assert json.loads(out) == {"message": "Hello Alice"}
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
    # A bad configuration stops it at start-up with one line naming the variable; the traceback only for debug.
    status, out, err = await run(sys.executable, "-m", package, cwd=root, env={**env, "MICRO_REGISTRY": "nope"})
    assert status == 3
    assert err.strip().count("\n") == 0, err
    assert "MICRO_REGISTRY" in err
    assert "Installed: " in err
    assert "local" in err
    status, out, err = await run(
        sys.executable, "-m", package, cwd=root, env={**env, "MICRO_REGISTRY": "nope", "MICRO_LOG_LEVEL": "debug"}
    )
    assert status == 3
    assert "Traceback" in err
    # An option with a bad value, and an address it cannot listen on: one line each too.
    status, out, err = await run(sys.executable, "-m", package, cwd=root, env={**env, "MICRO_REGISTER_TTL": "soon"})
    assert status == 3
    assert err.strip().count("\n") == 0, err
    assert "MICRO_REGISTER_TTL" in err
    status, out, err = await run(
        sys.executable, "-m", package, cwd=root, env={**env, "MICRO_SERVER_ADDRESS": "256.1.1.1:5"}
    )
    assert status == 3
    assert err.strip().count("\n") == 0, err
    assert "cannot listen on 256.1.1.1:5" in err


async def test_new_refuses_a_bad_name_and_an_existing_directory(tmp_path: Path) -> None:
    status, _, err = await micro("new", "Bad Name", "--directory", str(tmp_path / "x"))
    assert status == 2
    assert "lower-case" in err
    (tmp_path / "taken").mkdir()
    status, _, err = await micro("new", "taken", "--directory", str(tmp_path / "taken"))
    assert status == 1
    assert "already exists" in err


# -- micro store ----------------------------------------------------------------------------------------------


async def test_store_write_read_list_delete(tmp_path: Path) -> None:
    env = {"MICRO_STORE": "sqlite", "MICRO_STORE_PATH": str(tmp_path / "cli.db")}
    assert (await micro("store", "write", "user/1", "alice", env=env))[0] == 0
    assert (await micro("store", "write", "user/2", '{"name": "bob"}', "--ttl", "1h", env=env))[0] == 0
    status, out, err = await micro("store", "read", "user/1", env=env)
    assert (status, out) == (0, "alice"), err
    status, out, err = await micro("store", "list", "--json", env=env)
    assert status == 0, err
    assert json.loads(out) == ["user/1", "user/2"]
    status, out, err = await micro("store", "read", "user/", "--prefix", "--json", env=env)
    assert status == 0, err
    records = json.loads(out)
    assert [(r["key"], r["value"]) for r in records] == [("user/1", "alice"), ("user/2", '{"name": "bob"}')]
    assert records[0]["expiry"] is None
    assert 3500 < records[1]["expiry"] <= 3600
    status, out, err = await micro("store", "read", "user/", "--prefix", env=env)
    assert status == 0, err
    assert out.splitlines()[0].split() == ["key", "value", "expires", "in"]
    assert (await micro("store", "delete", "user/1", env=env))[0] == 0
    status, _, err = await micro("store", "read", "user/1", env=env)
    assert status == 1
    assert json.loads(err)["code"] == 404  # a missing key: the store's answer, as JSON
    # Another table is another table.
    assert (await micro("store", "write", "k", "v", "--table", "other", env=env))[0] == 0
    status, out, _ = await micro("store", "list", env=env)
    assert out.split() == ["user/2"]


async def test_store_refuses_the_memory_store_and_reports_an_unreachable_one() -> None:
    status, _, err = await micro("store", "list")
    assert status == 3
    assert "MICRO_STORE" in err
    assert "Traceback" not in err
    if importlib.util.find_spec("micro_redis") is None:
        pytest.skip("the unreachable store used here is asyncmicro-redis's, which is not installed")
    status, _, err = await micro(
        "store", "list", env={"MICRO_STORE": "redis", "MICRO_STORE_ADDRESS": "redis://127.0.0.1:1"}
    )
    assert status == 3
    assert "BackendUnavailable" in err
    assert "MICRO_STORE_ADDRESS" in err
    assert "Traceback" not in err
    status, _, err = await micro(
        "--debug", "store", "list", env={"MICRO_STORE": "redis", "MICRO_STORE_ADDRESS": "redis://127.0.0.1:1"}
    )
    assert status == 3
    assert "Traceback" in err


# -- micro config ---------------------------------------------------------------------------------------------


async def test_config_get_from_a_file_and_set_refused_on_a_read_only_source(tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    path.write_text(json.dumps({"database": {"host": "db", "port": 5432}}))
    env = {"MICRO_CONFIG": "file", "MICRO_CONFIG_PATH": str(path)}
    status, out, err = await micro("config", "get", "database.host", env=env)
    assert (status, out) == (0, "db\n"), err
    status, out, err = await micro("config", "get", "database", env=env)
    assert json.loads(out) == {"host": "db", "port": 5432}
    status, _, err = await micro("config", "get", "database.user", env=env)
    assert status == 1
    assert "database.user" in err
    status, _, err = await micro("config", "set", "database.host", "x", env=env)
    assert status == 3
    assert "read-only" in err
    assert "MICRO_CONFIG" in err


async def test_config_set_and_get_on_etcd() -> None:
    pytest.importorskip("micro_etcd", reason="the etcd config source is the asyncmicro-etcd plugin")
    from micro_etcd.config import EtcdSource
    from micro_etcd.options import EtcdSourceOptions

    prefix = f"micro-test/{uuid.uuid4().hex[:10]}/"
    env = {"MICRO_CONFIG": "etcd", "MICRO_CONFIG_PREFIX": prefix}
    status, _, err = await micro("config", "set", "database.port", "5433", env=env)
    if status == 3 and "BackendUnavailable" in err and os.environ.get("CI") != "true":
        pytest.skip(f"etcd does not answer on 127.0.0.1:2379: {err.strip()}")
    try:
        assert status == 0, err
        assert (await micro("config", "set", "database.host", "db.internal", env=env))[0] == 0
        status, out, err = await micro("config", "get", "database", env=env)
        assert status == 0, err
        assert json.loads(out) == {"host": "db.internal", "port": 5433}
    finally:
        from micro.config.base import ChangeSet

        async with EtcdSource(EtcdSourceOptions(prefix=prefix)) as source:
            await source.write(ChangeSet.of({}, "cleanup"))


# -- micro subscribe, micro call with streams ---------------------------------------------------------------


async def test_subscribe_prints_each_message_as_it_arrives() -> None:
    topic = f"cli.{uuid.uuid4().hex[:8]}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "micro",
        "subscribe",
        topic,
        "--count",
        "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stderr.readline(), 30)
        assert line.startswith(b"subscribed to "), line
        status, _, err = await micro("publish", topic, '{"n": 1}')
        assert status == 0, err
        # The first message is printed before the second is sent.
        first = await asyncio.wait_for(process.stdout.readline(), 30)
        assert json.loads(first) == {"n": 1}
        status, _, err = await micro("publish", topic, '"two"')
        assert status == 0, err
        second = await asyncio.wait_for(process.stdout.readline(), 30)
        assert json.loads(second) == "two"
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def test_call_client_and_bidirectional_streams_from_stdin(service: ServiceProcess) -> None:
    status, out, err = await micro("call", "--stream", service.name, "Echo.total", "-", stdin='{"n": 1}\n{"n": 2}\n')
    assert status == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [{"total": 3}]
    status, out, err = await micro("call", "--stream", service.name, "Echo.chat", "-", stdin='{"a": 1}\n\n{"b": 2}\n')
    assert status == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [{"echo": {"a": 1}}, {"echo": {"b": 2}}]
    status, out, err = await micro("call", "--stream", service.name, "Echo.chat", "-", stdin='{"a": 1}\nnot json\n')
    assert status == 2
    assert "stdin line 2" in err
    status, _, err = await micro("call", service.name, "Echo.chat", "-")
    assert status == 2
    assert "--stream" in err


# -- errors and tables --------------------------------------------------------------------------------------


async def test_a_local_configuration_error_is_one_line_and_a_remote_500_is_json(service: ServiceProcess) -> None:
    status, out, err = await micro("services", env={"MICRO_REGISTRY": "nope"})
    assert status == 3
    assert out == ""
    line, hint = err.strip().splitlines()
    assert "no registry named 'nope' (from MICRO_REGISTRY). Installed: " in line
    assert "--debug" in hint
    status, _, err = await micro("services", env={"MICRO_REGISTRY_ADRESS": "x"})
    assert status == 3
    assert "MICRO_REGISTRY_ADRESS: unknown option" in err
    status, _, err = await micro("--debug", "services", env={"MICRO_REGISTRY": "nope"})
    assert status == 3
    assert "Traceback" in err
    status, _, err = await micro("services", env={"MICRO_REGISTRY": "nope", "MICRO_LOG_LEVEL": "debug"})
    assert "Traceback" in err
    # The service's own failure: JSON from the remote side, status 1, its detail kept on the server.
    status, out, err = await micro("call", service.name, "Echo.fail")
    assert status == 1
    error = json.loads(err)
    assert (error["code"], error["id"]) == (500, service.name)
    assert "something broke" not in err


async def test_tables_fit_80_columns(service: ServiceProcess) -> None:
    for args in (("plugins",), ("services",)):
        status, out, err = await micro(*args, env={"COLUMNS": "80"})
        assert status == 0, err
        lines = out.splitlines()
        assert len(lines) > 1
        assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    status, out, _ = await micro("services")
    assert service.name in out
    status, out, _ = await micro("plugins")
    assert "asyncmicro-core" in out  # distribution names are never cut short


@pytest.mark.parametrize("command", [("debug", "logs", "x"), ("debug", "health", "x"), ("describe", "x")])
async def test_a_bad_backend_name_is_this_sides_error_not_the_services(command: tuple[str, ...]) -> None:
    # Exit 3 and one line naming the variable (a local configuration error), never exit 1 with the
    # error dressed as the service's reply.
    status, _, err = await micro(*command, env={"MICRO_REGISTRY": "bogus"})
    assert status == 3, err
    assert "MICRO_REGISTRY" in err
    assert "Traceback" not in err
