"""The local runtime: services as detached processes on this machine (``MICRO_RUNTIME=local``, the default).

Each service runs under a small supervisor (:mod:`micro.runtime._supervisor`)
in a session of its own, so it survives the process that started it (``micro
run`` returns at once) and its exit code is recorded even though nobody waits
for it. Everything is kept in the state directory, which is what lets ``micro
ps`` in one process see the services ``micro run`` started in another::

    <directory>/lock                   serialises create, update and delete
    <directory>/services/<name>.json   what to run: command, working directory, environment
    <directory>/status/<name>.json     written by the supervisor: pids, start, exit code
    <directory>/logs/<name>.log        the service's stdout and stderr

POSIX only (it relies on sessions, signals and ``fcntl`` locks).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.machinery
import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

from .._private import open_private, private_dir, write_private
from ..errors import BadRequest, Conflict, InternalError, ServiceNotFound, Timeout
from .base import Runtime, RuntimeLogs, RuntimeService, Status
from .options import RuntimeOptions

__all__ = ["LocalRuntime", "default_directory", "default_name", "resolve_command"]

_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MODULE: Final = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_SUPERVISOR: Final = str(Path(__file__).with_name("_supervisor.py"))
_LOCK_TIMEOUT: Final = 10.0
_SPAWN_TIMEOUT: Final = 15.0
_POLL: Final = 0.02
# Ending by these signals is how a service is asked to stop, so it is not an error.
_STOP_CODES: Final = frozenset({0, -signal.SIGTERM, -signal.SIGINT})


def default_directory() -> Path:
    """``$XDG_STATE_HOME/micro/runtime``, or ``~/.local/state/micro/runtime``."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "micro" / "runtime"


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRequest(
            f"bad service name {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def default_name(source: str) -> str:
    """A service name for ``source``: the directory's name, the file's stem, or the module's last part."""
    path = Path(source).expanduser()
    if path.is_dir():
        candidate = path.resolve().name
    elif path.suffix == ".py" and path.is_file():
        candidate = path.resolve().parent.name if path.stem in ("main", "__main__") else path.stem
    else:
        parts = [p for p in source.split(".") if p != "__main__"]
        candidate = parts[-1] if parts else source
    return re.sub(r"[^A-Za-z0-9._-]", "-", candidate).lstrip("._-")[:128] or "service"


def resolve_command(
    source: str,
    command: str | Sequence[str] | None = None,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
) -> tuple[list[str], str]:
    """The argument vector and working directory that run ``source`` (or ``command``).

    * a directory with ``__init__.py`` and ``__main__.py``: ``python -m <dir name>`` from its parent;
    * a directory with ``__main__.py``: ``python <dir>``; with ``main.py``: ``python main.py`` in it;
    * a ``.py`` file: ``python <file>`` in its directory;
    * a dotted module path: ``python -m <module>`` in the current directory.

    Raises :class:`BadRequest` when ``source`` is none of these (and no command is given): a path
    that does not exist, or a module whose top-level package is found neither by this interpreter
    nor in the current directory or ``env``'s ``PYTHONPATH``. Found out here, a missing source never
    becomes a service that dies at once.
    """
    python = sys.executable
    path = Path(source).expanduser() if source else None
    if command is not None:
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not argv:
            raise BadRequest("the command is empty")
        cwd = path.resolve() if path is not None and path.is_dir() else Path.cwd()
        return [*argv, *args], str(cwd)
    if path is None:
        raise BadRequest("a source (directory, .py file or module) or a command is needed")
    if path.is_dir():
        path = path.resolve()
        if (path / "__main__.py").is_file() and (path / "__init__.py").is_file() and _MODULE.match(path.name):
            return [python, "-m", path.name, *args], str(path.parent)
        if (path / "__main__.py").is_file():
            return [python, str(path), *args], str(path)
        if (path / "main.py").is_file():
            return [python, "main.py", *args], str(path)
        raise BadRequest(f"directory {source!r} has neither __main__.py nor main.py")
    if path.suffix == ".py" and path.is_file():
        path = path.resolve()
        return [python, str(path), *args], str(path.parent)
    if not path.exists() and (path.suffix == ".py" or os.sep in source or "/" in source):
        raise BadRequest(f"source {source!r} does not exist: it is neither a file nor a directory")
    if _MODULE.match(source) and not path.exists():
        if not _module_exists(source.partition(".")[0], env):
            raise BadRequest(f"source {source!r} is neither a file, a directory nor an importable module")
        return [python, "-m", source, *args], str(Path.cwd())
    raise BadRequest(f"source {source!r} is neither a directory, a .py file nor a module path")


def _module_exists(top: str, env: Mapping[str, str] | None) -> bool:
    """Whether ``python -m`` in the current directory, with ``env``, would find the package ``top``.

    Looks without importing: this interpreter's finders (editable installs included), then the
    places ``python -m`` adds, the current directory and ``PYTHONPATH``.
    """
    with contextlib.suppress(ImportError, ValueError):
        if importlib.util.find_spec(top) is not None:
            return True
    pythonpath = (env or {}).get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    places = [os.getcwd(), *filter(None, pythonpath.split(os.pathsep))]
    return importlib.machinery.PathFinder.find_spec(top, places) is not None


def _absolute(source: str) -> str:
    """A path source made absolute (so a restart from elsewhere finds it); a module path as it is."""
    path = Path(source).expanduser()
    return str(path.resolve()) if source and path.exists() else source


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with path.open(encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InternalError(f"runtime state file {path} is unreadable: {exc}") from exc
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_private(path, json.dumps(data).encode())


def _alive(pid: int, marker: str | None = None) -> bool:
    """Whether ``pid`` runs (a zombie does not count) and, if ``marker`` is given, is still our supervisor.

    The marker (the status file's path, which is on the supervisor's command
    line) keeps a recycled pid from being mistaken for, and signalled as, ours.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return marker is None
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            if stat.read().rpartition(b")")[2].split()[0] == b"Z":
                return False
        if marker is not None:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                return marker.encode() in cmdline.read().split(b"\0")
    except (OSError, IndexError):
        pass  # no /proc: trust kill(0)
    return True


class _Logs(RuntimeLogs):
    def __init__(self, path: Path, *, count: int | None, follow: bool, poll: float = 0.1) -> None:
        self._path = path
        self._count = count
        self._follow = follow
        self._poll = poll
        self._lines: deque[str] = deque()
        self._partial = b""
        self._offset: int | None = None
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        self._stopped.set()

    def _tail(self) -> None:
        try:
            with self._path.open("rb") as file:
                end = file.seek(0, os.SEEK_END)
                start = end
                if self._count is None:
                    start = 0
                elif self._count > 0:
                    # Read backwards in blocks until enough line ends are in view.
                    block = 64 * 1024
                    while start > 0:
                        start = max(0, start - block)
                        file.seek(start)
                        if file.read(end - start).count(b"\n") > self._count:
                            break
                file.seek(start)
                data = file.read(end - start)
        except FileNotFoundError:
            data, end = b"", 0
        self._offset = end
        *lines, self._partial = data.split(b"\n")
        if self._count is not None:
            # All of them when there are fewer than asked for (a negative start would cut from the end).
            lines = lines[max(0, len(lines) - self._count) :] if self._count else []
        self._lines.extend(line.decode("utf-8", "replace") for line in lines)

    def _more(self) -> None:
        try:
            with self._path.open("rb") as file:
                size = file.seek(0, os.SEEK_END)
                if self._offset is None or size < self._offset:  # truncated: a fresh run
                    self._offset, self._partial = 0, b""
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        self._lines.extend(line.decode("utf-8", "replace") for line in lines)

    async def __anext__(self) -> str:
        if self._stopped.is_set():
            raise StopAsyncIteration
        if self._offset is None:
            self._tail()
        while not self._lines:
            if not self._follow or self._stopped.is_set():
                raise StopAsyncIteration
            self._more()
            if not self._lines:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), self._poll)
        return self._lines.popleft()


class LocalRuntime(Runtime):
    """Runs services as local processes, with state in a per-user directory.

    Closing the runtime leaves its services running: they belong to the
    machine, not to this object. Use :meth:`delete` to stop one.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({"stream"})

    def __init__(self, options: RuntimeOptions | None = None) -> None:
        super().__init__(options)
        self._default = not self.options.directory
        self.directory = Path(self.options.directory).expanduser() if self.options.directory else default_directory()

    # -- files ---------------------------------------------------------------------------------------

    def _paths(self, name: str) -> tuple[Path, Path, Path]:
        return (
            self.directory / "services" / f"{name}.json",
            self.directory / "status" / f"{name}.json",
            self.directory / "logs" / f"{name}.log",
        )

    def _prepare(self) -> None:
        # The default directory is micro's own: made, or checked and tightened, 0700. A configured one that
        # exists is the user's choice; what micro makes inside it is private either way.
        if self._default or not self.directory.exists():
            private_dir(self.directory)
        for sub in ("services", "status", "logs"):
            private_dir(self.directory / sub)

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        self._prepare()
        fd = open_private(self.directory / "lock", os.O_RDWR)
        try:
            deadline = time.monotonic() + _LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise Timeout(f"the runtime directory {self.directory} stayed locked") from None
                    await asyncio.sleep(_POLL)
            yield
        finally:
            os.close(fd)  # also releases the lock

    def _load(self, name: str) -> dict[str, Any]:
        state = _read_json(self._paths(_check_name(name))[0])
        if state is None:
            raise ServiceNotFound(f"no service named {name!r} in the runtime at {self.directory}")
        return state

    def _describe(self, state: Mapping[str, Any]) -> RuntimeService:
        name = str(state["name"])
        status_path = self._paths(name)[1]
        status_data = _read_json(status_path) or {}
        supervisor = status_data.get("supervisor")
        running = False
        if status_data.get("exit_code") is None and isinstance(supervisor, int):
            running = _alive(supervisor, str(status_path))
            if not running:  # it may have written the exit code just before it went
                status_data = _read_json(status_path) or status_data
        exit_code = status_data.get("exit_code")
        if running:
            status = Status.RESTARTING if status_data.get("restarting") else Status.RUNNING
        elif exit_code is not None:
            status = Status.STOPPED if exit_code in _STOP_CODES else Status.ERROR
        else:  # the supervisor died without a word: SIGKILL or a crash
            status = Status.ERROR
        return RuntimeService(
            name=name,
            version=str(state.get("version", "latest")),
            source=str(state.get("source", "")),
            metadata=dict(state.get("metadata") or {}),
            status=status,
            pid=status_data.get("pid"),
            exit_code=exit_code,
            started=status_data.get("started"),
            restarts=int(status_data.get("restarts") or 0),
        )

    # -- processes ----------------------------------------------------------------------------------

    async def _spawn(self, state: Mapping[str, Any], *, truncate: bool) -> None:
        _, status_path, log_path = self._paths(state["name"])
        status_path.unlink(missing_ok=True)
        os.close(open_private(log_path, os.O_WRONLY | (os.O_TRUNC if truncate else os.O_APPEND)))
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **state["env"]}
        policy = state.get("restart") or self._policy()
        argv = [sys.executable, _SUPERVISOR, str(status_path), str(log_path), policy, "--", *state["command"]]
        try:
            done = await asyncio.to_thread(
                subprocess.run,
                argv,
                cwd=state["cwd"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=_SPAWN_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise Timeout(f"the supervisor of {state['name']!r} did not report within {_SPAWN_TIMEOUT}s") from exc
        except OSError as exc:  # e.g. the working directory is gone
            raise BadRequest(f"cannot start {state['name']!r}: {exc}") from exc
        output = done.stdout.decode("utf-8", "replace").strip().splitlines()
        report = output[-1] if output else ""
        if report.startswith("error "):
            raise BadRequest(f"cannot start {state['name']!r}: {report[6:]}")
        if not report.startswith("ok "):
            raise InternalError(f"the supervisor of {state['name']!r} failed: {' '.join(output) or done.returncode}")

    def _policy(self) -> str:
        """The supervisor's POLICY argument for these options (see :mod:`micro.runtime._supervisor`)."""
        o = self.options
        if o.restart == "never":
            return "never"
        return f"{o.restart},{o.restart_delay!r},{o.restart_max_delay!r},{o.restart_limit}"

    async def _stop(self, name: str) -> None:
        status_path = self._paths(name)[1]
        status = _read_json(status_path) or {}
        supervisor = status.get("supervisor")
        if not isinstance(supervisor, int) or not _alive(supervisor, str(status_path)):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor, signal.SIGTERM)  # forwarded to the service, once
        if await self._wait_gone(supervisor, str(status_path), self.options.grace):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(supervisor, signal.SIGKILL)  # the supervisor leads the group: this reaches everything
        service = status.get("pid")
        if not (
            await self._wait_gone(supervisor, str(status_path), 5.0)
            and (not isinstance(service, int) or await self._wait_gone(service, None, 5.0))
        ):
            raise Timeout(f"service {name!r} (supervisor pid {supervisor}) survived SIGKILL")

    async def _wait_gone(self, pid: int, marker: str | None, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while _alive(pid, marker):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_POLL)
        return True

    # -- the interface ------------------------------------------------------------------------------

    async def create(
        self,
        service: RuntimeService,
        *,
        command: str | Sequence[str] | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> RuntimeService:
        name = _check_name(service.name)
        environment = {str(k): str(v) for k, v in (env or {}).items()}
        argv, cwd = resolve_command(service.source, command, args, env=environment)
        source = _absolute(service.source)
        async with self._locked():
            existing = _read_json(self._paths(name)[0])
            if existing is not None and self._describe(existing).status is Status.RUNNING:
                raise Conflict(f"service {name!r} is already running; update or delete it first")
            state = {
                "name": name,
                "version": service.version,
                "source": source,
                "metadata": dict(service.metadata),
                "command": argv,
                "explicit_command": command is not None,
                "args": list(args),
                "cwd": cwd,
                "env": environment,
                "restart": self._policy(),
                "created": time.time(),
            }
            _write_json(self._paths(name)[0], state)
            try:
                await self._spawn(state, truncate=True)
            except BaseException:
                for path in self._paths(name)[:2]:
                    path.unlink(missing_ok=True)
                raise
            return self._describe(state)

    async def read(self, *, name: str | None = None) -> list[RuntimeService]:
        if name is not None:
            state = _read_json(self._paths(_check_name(name))[0])
            return [self._describe(state)] if state is not None else []
        folder = self.directory / "services"
        if not folder.is_dir():
            return []
        found = []
        for path in sorted(folder.glob("*.json")):
            state = _read_json(path)
            if state is not None:
                found.append(self._describe(state))
        return found

    async def update(self, service: RuntimeService | str) -> RuntimeService:
        name = service if isinstance(service, str) else service.name
        async with self._locked():
            state = self._load(name)
            if isinstance(service, RuntimeService):
                state.update(version=service.version, metadata=dict(service.metadata))
                if service.source and not state.get("explicit_command"):
                    argv, cwd = resolve_command(service.source, None, state.get("args", ()), env=state.get("env"))
                    state.update(source=_absolute(service.source), command=argv, cwd=cwd)
                _write_json(self._paths(name)[0], state)
            await self._stop(name)
            await self._spawn(state, truncate=False)
            return self._describe(state)

    async def delete(self, service: RuntimeService | str) -> None:
        name = service if isinstance(service, str) else service.name
        async with self._locked():
            self._load(name)
            await self._stop(name)
            for path in self._paths(name):
                path.unlink(missing_ok=True)

    async def logs(
        self, service: RuntimeService | str, *, count: int | None = None, stream: bool = False
    ) -> RuntimeLogs:
        name = service if isinstance(service, str) else service.name
        if count is not None and count < 0:
            raise BadRequest(f"count must not be negative, got {count}")
        self._load(name)
        return _Logs(self._paths(name)[2], count=count, follow=stream)
