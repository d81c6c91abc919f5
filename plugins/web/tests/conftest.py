"""A real greeter service on the local registry, in a private XDG tree that ``micro web`` subprocesses share."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import micro
import pytest

XDG = ("XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")
log = logging.getLogger("micro.greeter")


@dataclass
class HelloRequest:
    name: str


@dataclass
class HelloResponse:
    message: str


class Say:
    async def hello(self, req: HelloRequest) -> HelloResponse:
        if not req.name:
            raise micro.errors.BadRequest("name must not be empty")
        if req.name == "boom":
            raise RuntimeError("a bug in the handler")
        log.warning("greeting %s", req.name)
        return HelloResponse(message=f"Hello {req.name}")


@pytest.fixture
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's own registry and secrets: os.environ for the in-process service, a copy for subprocesses."""
    for key in list(os.environ):
        if key.startswith("MICRO_"):
            monkeypatch.delenv(key)
    for name in XDG:
        path = tmp_path / name.lower()
        path.mkdir(mode=0o700)
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("MICRO_REGISTRY", "local")
    monkeypatch.setenv("MICRO_TRACER_SAMPLE", "1")  # every call traced: the waterfall has something to show
    return dict(os.environ)


@pytest.fixture
def say() -> Say:
    """The greeter's handler, for tests that build their own service."""
    return Say()


@pytest.fixture
async def greeter(environ: dict[str, str]) -> AsyncIterator[micro.Service]:
    service = micro.Service("greeter", environ=environ)
    service.handle(Say())
    async with service:
        yield service


#: The ``micro`` command of this interpreter's installation.
MICRO = [sys.executable, "-c", "from micro.cli import main; main()"]
_URL = re.compile(r"micro web: (http://127\.0\.0\.1:\d+)/#token=(\S+)")


@contextmanager
def _micro_web(environ: dict[str, str], *args: str) -> Iterator[tuple[str, str]]:
    """``micro web --address 127.0.0.1:0``: yields its base URL and token; SIGINT must stop it cleanly."""
    process = subprocess.Popen(
        [*MICRO, "web", "--address", "127.0.0.1:0", *args],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = _URL.search(line)
        assert found, f"no address printed: {line!r}"
        yield found[1], found[2]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, errors = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
    assert process.returncode == 0, errors


@pytest.fixture
def micro_web() -> Callable[..., AbstractContextManager[tuple[str, str]]]:
    """Runs ``micro web`` in a process: ``with micro_web(environ) as (url, token): ...``."""
    return _micro_web
