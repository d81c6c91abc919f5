import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import micro
import pytest
from micro.errors import BadRequest, Conflict, InvalidOption, ServiceNotFound
from micro.runtime import RuntimeService, Status
from micro.runtime.local import LocalRuntime, default_name, resolve_command
from micro.runtime.options import RuntimeOptions

from .conftest import alive, write_service


async def wait_for(predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def lines(runtime: LocalRuntime, name: str, **kwargs) -> list[str]:
    return [line async for line in await runtime.logs(name, **kwargs)]


def test_created_by_name_with_directory_from_environment(tmp_path):
    runtime = micro.create("runtime", environ={"MICRO_RUNTIME_DIRECTORY": str(tmp_path), "MICRO_RUNTIME_GRACE": "1s"})
    assert isinstance(runtime, LocalRuntime)
    assert runtime.directory == tmp_path
    assert runtime.options.grace == 1.0
    with pytest.raises(InvalidOption, match="MICRO_RUNTIME_GRACE"):
        micro.create("runtime", environ={"MICRO_RUNTIME_GRACE": "-1"})


def test_default_directory_is_per_user(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert LocalRuntime().directory == tmp_path / "micro" / "runtime"


async def test_create_read_logs_delete(runtime, service_dir):
    created = await runtime.create(
        RuntimeService(name="greeter", version="1.0", source=str(service_dir), metadata={"team": "a"}),
        args=["--flag"],
        env={"GREETING": "hi"},
    )
    assert created.status is Status.RUNNING
    assert created.pid is not None
    assert alive(created.pid)
    assert os.getsid(created.pid) != os.getsid(0), "the service must be detached from its starter"
    assert created.started is not None
    assert created.started <= time.time()

    (read,) = await runtime.read()
    assert read == created
    assert (read.name, read.version, read.source, read.metadata) == ("greeter", "1.0", str(service_dir), {"team": "a"})
    assert await runtime.read(name="greeter") == [read]
    assert await runtime.read(name="other") == []

    async def ticked() -> list[str]:
        found = await lines(runtime, "greeter")
        return found if "tick 2" in found else []

    output = await wait_for(ticked, "three ticks in the log")
    assert output[0] == "started hi --flag"
    assert "oops on stderr" in output
    assert (await lines(runtime, created, count=2))[-1].startswith("tick")
    assert len(await lines(runtime, "greeter", count=2)) == 2
    assert await lines(runtime, "greeter", count=0) == []

    await runtime.delete(created)
    assert not alive(created.pid)
    assert await runtime.read() == []
    with pytest.raises(ServiceNotFound):
        await runtime.logs("greeter")
    with pytest.raises(ServiceNotFound):
        await runtime.delete("greeter")
    with pytest.raises(ServiceNotFound):
        await runtime.update("greeter")


async def test_a_second_runtime_sees_and_stops_the_service(runtime, service_dir):
    created = await runtime.create(RuntimeService(name="shared", source=str(service_dir)))
    other = LocalRuntime(RuntimeOptions(directory=str(runtime.directory)))
    (seen,) = await other.read()
    assert (seen.name, seen.pid, seen.status) == ("shared", created.pid, Status.RUNNING)
    await other.delete("shared")
    assert not alive(created.pid)
    assert await runtime.read() == []


async def test_create_while_running_conflicts(runtime, service_dir):
    await runtime.create(RuntimeService(name="once", source=str(service_dir)))
    with pytest.raises(Conflict, match="already running"):
        await runtime.create(RuntimeService(name="once", source=str(service_dir)))


async def test_update_restarts_with_new_version(runtime, service_dir):
    first = await runtime.create(RuntimeService(name="restart", version="1", source=str(service_dir)))

    async def started_once() -> bool:
        return "started -" in await lines(runtime, "restart")

    await wait_for(started_once, "the first start")
    second = await runtime.update(RuntimeService(name="restart", version="2", source=str(service_dir)))
    assert second.status is Status.RUNNING
    assert second.version == "2"
    assert second.pid != first.pid
    assert not alive(first.pid)

    async def started_twice() -> list[str]:
        found = await lines(runtime, "restart")
        return found if found.count("started -") == 2 else []

    output = await wait_for(started_twice, "the restart")
    assert "stopping" in output  # SIGTERM reached the first process, which exited cleanly
    assert (await runtime.update("restart")).version == "2"


async def test_exit_codes_give_stopped_or_error(runtime, tmp_path):
    ok = write_service(tmp_path / "ok", "print('bye')\n")
    bad = write_service(tmp_path / "bad", "import sys\nsys.exit(3)\n")
    await runtime.create(RuntimeService(name="ok", source=str(ok)))
    await runtime.create(RuntimeService(name="bad", source=str(bad)))

    async def finished() -> list[RuntimeService]:
        services = await runtime.read()
        return services if all(s.status is not Status.RUNNING for s in services) else []

    done = {s.name: s for s in await wait_for(finished, "both to exit")}
    assert (done["ok"].status, done["ok"].exit_code) == (Status.STOPPED, 0)
    assert (done["bad"].status, done["bad"].exit_code) == (Status.ERROR, 3)
    assert await lines(runtime, "ok") == ["bye"]
    # an exited service can be created again under its name
    again = await runtime.create(RuntimeService(name="ok", source=str(ok)))
    assert again.pid != done["ok"].pid


async def test_a_killed_supervisor_means_error(runtime, service_dir):
    created = await runtime.create(RuntimeService(name="killed", source=str(service_dir)))
    os.killpg(os.getpgid(created.pid), signal.SIGKILL)  # the service and its supervisor, without a word

    async def died() -> list[RuntimeService]:
        return [s for s in await runtime.read() if s.status is not Status.RUNNING]

    (gone,) = await wait_for(died, "the status to change")
    assert (gone.status, gone.exit_code) == (Status.ERROR, None)
    await runtime.delete("killed")  # nothing left to stop: it only forgets
    assert await runtime.read() == []


async def test_a_service_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    stubborn = write_service(
        tmp_path / "stubborn",
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n",
    )
    runtime = LocalRuntime(RuntimeOptions(directory=str(tmp_path / "state"), grace=0.3))
    created = await runtime.create(RuntimeService(name="stubborn", source=str(stubborn)))
    try:

        async def ready() -> bool:
            return "ready" in await lines(runtime, "stubborn")

        await wait_for(ready, "the handler to be installed")
        started = time.monotonic()
        await runtime.delete("stubborn")
        assert time.monotonic() - started >= 0.3
        assert not alive(created.pid)
    finally:
        for service in await runtime.read():
            await runtime.delete(service)


async def test_streaming_logs_follow_until_stopped(runtime, service_dir):
    await runtime.create(RuntimeService(name="follow", source=str(service_dir)))
    received: list[str] = []
    async with await runtime.logs("follow", count=0, stream=True) as stream:
        async for line in stream:
            received.append(line)
            if sum(1 for r in received if r.startswith("tick")) == 3:
                stream.stop()
    ticks = [int(r.split()[1]) for r in received if r.startswith("tick")]
    assert ticks == list(range(ticks[0], ticks[0] + 3))


async def test_module_sources_and_commands(runtime, tmp_path):
    modules = tmp_path / "modules"
    write_service(modules, "import sys\nprint('module', sys.argv[1:])\n", filename="svcmod.py")
    await runtime.create(RuntimeService(name="mod", source="svcmod"), args=["x"], env={"PYTHONPATH": str(modules)})
    await runtime.create(
        RuntimeService(name="cmd", source=str(modules)), command=[sys.executable, "-c", "import os; print(os.getcwd())"]
    )

    async def both() -> bool:
        return await lines(runtime, "mod") == ["module ['x']"] and await lines(runtime, "cmd") == [str(modules)]

    await wait_for(both, "both outputs")


async def test_bad_input_is_refused(runtime, tmp_path):
    with pytest.raises(BadRequest, match="name"):
        await runtime.create(RuntimeService(name="../escape", source="x"))
    with pytest.raises(BadRequest, match="name"):
        await runtime.read(name="a b")
    with pytest.raises(BadRequest, match="neither"):
        await runtime.create(RuntimeService(name="empty", source=str(tmp_path)))
    with pytest.raises(BadRequest, match="neither"):
        await runtime.create(RuntimeService(name="nowhere", source="not/a/thing"))
    with pytest.raises(BadRequest, match="cannot start"):
        await runtime.create(RuntimeService(name="missing"), command="/nonexistent/program --x")
    assert await runtime.read() == []
    with pytest.raises(BadRequest, match="count"):
        await runtime.logs("missing", count=-1)


def test_resolve_command_variants(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    python = sys.executable
    package = write_service(tmp_path / "pkg", "")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("")
    assert resolve_command(str(package)) == ([python, "-m", "pkg"], str(tmp_path))
    loose = write_service(tmp_path / "loose", "", filename="__main__.py")
    assert resolve_command(str(loose), args=["a"]) == ([python, str(loose), "a"], str(loose))
    plain = write_service(tmp_path / "plain", "")
    assert resolve_command(str(plain)) == ([python, "main.py"], str(plain))
    assert resolve_command(str(plain / "main.py")) == ([python, str(plain / "main.py")], str(plain))
    write_service(tmp_path / "some", "", "__init__.py")  # found in the current directory, as python -m would
    assert resolve_command("some.module") == ([python, "-m", "some.module"], str(tmp_path))
    assert resolve_command("json.tool")[0] == [python, "-m", "json.tool"]  # found by the interpreter
    with pytest.raises(BadRequest, match="importable module"):
        resolve_command("no_such_package_xyz.module")
    assert resolve_command("", "echo 'a b'", ["c"]) == (["echo", "a b", "c"], str(tmp_path))
    with pytest.raises(BadRequest, match="empty"):
        resolve_command("", "")
    with pytest.raises(BadRequest, match="needed"):
        resolve_command("")


def test_default_names(tmp_path):
    assert default_name(str(write_service(tmp_path / "greeter", ""))) == "greeter"
    assert default_name(str(tmp_path / "greeter" / "main.py")) == "greeter"
    (tmp_path / "tool.py").write_text("")
    assert default_name(str(tmp_path / "tool.py")) == "tool"
    assert default_name("contrib.greeter.__main__") == "greeter"
    assert default_name(str(Path("/"))) == "service"
