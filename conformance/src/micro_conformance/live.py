"""Suites that need a live server: skipped without one on a developer's machine, failed without one under CI.

A plugin's ``conftest.py`` names its server once, at its default address::

    from micro_conformance.live import LiveServer

    REDIS = LiveServer("Redis", os.environ.get("MICRO_TEST_REDIS_URL", "redis://127.0.0.1:6379"))


    def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
        REDIS.mark(items)  # every test needs it, except those marked ``offline``

``REDIS.mark`` puts the marker ``live_server(REDIS)`` on each test (``@pytest.mark.live_server(REDIS)`` does it
for one test, and a fixture can call ``REDIS.require()``). Before such a test runs, the server is probed, once
per session: a TCP connection to its address, then the optional ``probe`` (a Consul agent must have a leader,
say), tried again for up to ``wait`` seconds (a server still starting, or one busy with other suites, gets
that long). When it does not answer, the test is skipped with the reason, unless the environment variable ``CI`` is
true (``true``, ``1``, ``yes``, ``on``): then the test FAILS with the same reason. A backend that did not come up
can never turn a CI run green by skipping the suite that needs it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import pytest

__all__ = ["LIVE_MARKER", "LiveServer", "in_ci", "skip_or_fail"]

#: The marker of a test that needs a live server: ``@pytest.mark.live_server(server)``.
LIVE_MARKER = "live_server"
_TRUE = frozenset({"1", "true", "yes", "on"})


def in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``CI`` is set to a true value (CI services set ``CI=true``)."""
    return (os.environ if environ is None else environ).get("CI", "").strip().lower() in _TRUE


def skip_or_fail(reason: str) -> None:
    """Skip the running test with ``reason``; under CI (see :func:`in_ci`) fail it instead."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: a missing backend fails the suite instead of skipping it)", pytrace=False)
    pytest.skip(reason)


@dataclass(eq=False)
class LiveServer:
    """A server a suite talks to, probed once per session (see the module docstring).

    :param name: what it is, for messages: ``"Redis"``, ``"Consul agent"``.
    :param address: where it is: a URL (``redis://127.0.0.1:6379``) or ``host:port``.
    :param default_port: the port when ``address`` has none.
    :param probe: called after the TCP connection succeeded; returns why the server cannot be used, or ``None``.
    :param hint: how to point the suite elsewhere, appended to the reason (``"set CONSUL_HTTP_ADDR"``).
    :param timeout: seconds to wait for the TCP connection.
    :param wait: seconds to keep trying (every ``interval``) before the server is taken as down.
    """

    name: str
    address: str
    default_port: int | None = None
    probe: Callable[[], str | None] | None = None
    hint: str = ""
    timeout: float = 2.0
    wait: float = 5.0
    interval: float = 0.25
    _checked: bool = field(default=False, init=False, repr=False)
    _reason: str | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def endpoint(self) -> tuple[str, int]:
        """``(host, port)`` of :attr:`address`."""
        parts = urllib.parse.urlsplit(self.address if "//" in self.address else f"//{self.address}")
        port = parts.port or self.default_port
        if port is None:
            raise ValueError(f"{self.name}: address {self.address!r} has no port and no default_port was given")
        return parts.hostname or "127.0.0.1", port

    def unavailable(self) -> str | None:
        """``None`` if the server answers, else why it cannot be used (probed once, then remembered)."""
        with self._lock:
            if not self._checked:
                self._reason = self._check()
                self._checked = True
            return self._reason

    def _check(self) -> str | None:
        deadline = time.monotonic() + self.wait
        while True:
            reason = self._attempt()
            if reason is None or time.monotonic() + self.interval > deadline:
                return reason
            time.sleep(self.interval)

    def _attempt(self) -> str | None:
        host, port = self.endpoint()
        hint = f"; {self.hint}" if self.hint else ""
        try:
            with socket.create_connection((host, port), timeout=self.timeout):
                pass
        except OSError as exc:
            return f"{self.name} not available at {self.address}: {exc}{hint}"
        why = self.probe() if self.probe is not None else None
        return f"{self.name} at {self.address} cannot be used: {why}{hint}" if why else None

    def require(self) -> None:
        """Return if the server answers; else skip the running test, or fail it under CI."""
        reason = self.unavailable()
        if reason is not None:
            skip_or_fail(reason)

    def mark(self, items: Iterable[pytest.Item], *, unless: str = "offline") -> None:
        """Mark every test of ``items`` as needing this server, except those carrying the marker ``unless``."""
        for item in items:
            if item.get_closest_marker(unless) is None:
                item.add_marker(pytest.mark.live_server(self))


def require_marked(item: pytest.Item) -> None:
    """Check every server ``item`` is marked with (the pytest plugin calls this before each test's setup)."""
    for marker in item.iter_markers(LIVE_MARKER):
        for server in marker.args:
            if not isinstance(server, LiveServer):
                raise pytest.UsageError(
                    f"{item.nodeid}: @pytest.mark.{LIVE_MARKER} takes LiveServer objects, got {server!r}"
                )
            server.require()
