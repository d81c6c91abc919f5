"""Fixtures: a real service (micro's mucp server, the local registry) and the gateway in front of it.

The local registry and other per-user state go to a directory of this run's own (as core's tests do),
so ``micro api`` in a subprocess finds the services a test registers, and nothing of the developer's.
"""

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_ROOT = tempfile.mkdtemp(prefix="micro-api-tests-")
for _name in ("XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
    _path = os.path.join(_ROOT, _name.lower())
    os.makedirs(_path, mode=0o700, exist_ok=True)
    os.environ[_name] = _path
for _key in [k for k in os.environ if k.startswith("MICRO_")]:
    del os.environ[_key]

import micro  # noqa: E402
from micro_api import APIOptions  # noqa: E402
from shop import Running, Shop, start_gateway, unique_name  # noqa: E402


def pytest_unconfigure() -> None:
    shutil.rmtree(_ROOT, ignore_errors=True)


@pytest.fixture
async def service() -> AsyncIterator[str]:
    """A running service with the :class:`Shop` handler, registered in the local registry; its name."""
    name = unique_name()
    svc = micro.Service(name, drain_timeout=1.0)
    svc.handle(Shop())
    async with svc:
        yield name


@pytest.fixture
async def api(request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    """The gateway served by uvicorn on an ephemeral loopback port (options from ``@pytest.mark.api_options``)."""
    marker = request.node.get_closest_marker("api_options")
    values = dict(marker.kwargs) if marker else {}
    options = APIOptions(address="127.0.0.1:0", **values)
    running, task, server = await start_gateway(options)
    try:
        yield running
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        async with asyncio.timeout(30):
            await task
