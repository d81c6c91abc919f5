"""The runtime interface: run services as processes and manage them (Go Micro ``runtime``).

A :class:`Runtime` starts a service from its source (a directory or a Python
module), reports its status, restarts it, stops it and returns its output.
Services outlive the object (and the process) that started them: a runtime
built later, anywhere on the same machine and state directory, sees and
manages them.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self

from ..component import Component
from .options import RuntimeOptions

__all__ = ["Runtime", "RuntimeLogs", "RuntimeService", "Status"]


class Status(enum.StrEnum):
    """Where a service's process is."""

    RUNNING = "running"
    #: Ended with another code or signal and waits to be started again (the restart policy).
    RESTARTING = "restarting"
    #: Exited with code 0, or ended by SIGTERM or SIGINT.
    STOPPED = "stopped"
    #: Exited with another code or signal, or could not be started.
    ERROR = "error"


@dataclass(frozen=True, kw_only=True, slots=True)
class RuntimeService:
    """A service the runtime runs (Go Micro ``runtime.Service``) and, from :meth:`Runtime.read`, its state."""

    name: str
    version: str = "latest"
    #: A directory (with ``__main__.py`` or ``main.py``), a ``.py`` file, or a module path (``pkg.service``).
    source: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    #: The fields below are filled in by the runtime and ignored on input.
    status: Status | None = None
    #: The service process's id (``None`` when it never started).
    pid: int | None = None
    #: How the process ended: its exit code, or minus the signal number; ``None`` while running.
    exit_code: int | None = None
    #: When it was last started, seconds since the epoch.
    started: float | None = None
    #: How many times the restart policy has started it again since it was created or updated.
    restarts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "metadata": dict(self.metadata),
            "status": self.status.value if self.status else None,
            "pid": self.pid,
            "exit_code": self.exit_code,
            "started": self.started,
            "restarts": self.restarts,
        }


class RuntimeLogs(AsyncIterator[str], abc.ABC):
    """Lines of a service's output, without their line endings.

    Iteration ends after the lines that exist or, when following, at
    :meth:`stop`. Usable as ``async with`` (stops on exit).
    """

    @abc.abstractmethod
    def stop(self) -> None:
        """End the iteration: a waiting or later step raises ``StopAsyncIteration``. Idempotent."""

    def __aiter__(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Runtime(Component, abc.ABC):
    """Runs services as processes. Every operation names the service by ``RuntimeService.name``.

    Names are 1-128 characters of letters, digits, ``.``, ``_`` and ``-``,
    starting with a letter or digit; anything else raises
    :class:`~micro.errors.BadRequest`.
    """

    options: RuntimeOptions
    interface: ClassVar[str] = "runtime"
    options_type: ClassVar[type[RuntimeOptions]] = RuntimeOptions

    @abc.abstractmethod
    async def create(
        self,
        service: RuntimeService,
        *,
        command: str | Sequence[str] | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> RuntimeService:
        """Start ``service`` and return its state (running, with a pid).

        :param command: what to run instead of what ``service.source`` implies
            (a string is split like a shell would); ``source`` is then only
            the working directory, if it is one.
        :param args: extra arguments after the command.
        :param env: variables set over the caller's environment.
        :raises Conflict: a service with this name is running.
        :raises BadRequest: a bad name, a source that is neither a runnable
            directory, a ``.py`` file nor a module path, or a command that
            cannot be started.
        """

    @abc.abstractmethod
    async def read(self, *, name: str | None = None) -> list[RuntimeService]:
        """Every service (only ``name`` if given) with its status, sorted by name; ``[]`` if none."""

    @abc.abstractmethod
    async def update(self, service: RuntimeService | str) -> RuntimeService:
        """Restart the service, with ``service``'s version, source and metadata; return its new state.

        :raises ServiceNotFound: no service has this name.
        """

    @abc.abstractmethod
    async def delete(self, service: RuntimeService | str) -> None:
        """Stop the service (SIGTERM, then SIGKILL after ``grace`` seconds) and forget it, logs included.

        :raises ServiceNotFound: no service has this name.
        """

    @abc.abstractmethod
    async def logs(
        self, service: RuntimeService | str, *, count: int | None = None, stream: bool = False
    ) -> RuntimeLogs:
        """The service's output (stdout and stderr together).

        :param count: start with only the last ``count`` lines.
        :param stream: keep following the output as it grows, until :meth:`RuntimeLogs.stop`.
        :raises ServiceNotFound: no service has this name.
        :raises BadRequest: a negative ``count``.
        """
