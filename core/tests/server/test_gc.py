"""The server raises the collector's young-generation threshold when it starts (``gc_threshold``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import micro
import pytest
from micro.errors import InvalidOption
from micro.server.options import ServerOptions

from .rpcstack import Stack


class Echo:
    async def echo(self, req: dict[str, Any]) -> dict[str, Any]:
        return req


@pytest.fixture
def threshold() -> Iterator[None]:
    """Put the process's thresholds back after the test: they are process-wide."""
    saved = gc.get_threshold()
    gc.set_threshold(700, *saved[1:])
    try:
        yield
    finally:
        gc.set_threshold(*saved)


@pytest.mark.usefixtures("threshold")
async def test_starting_a_server_raises_the_young_threshold(stack: Stack) -> None:
    server = stack.server(Echo(), gc_threshold=12_345)
    await server.start()
    assert gc.get_threshold()[0] == 12_345
    assert await stack.client().call(stack.name, "Echo.echo", {"a": 1}) == {"a": 1}


@pytest.mark.usefixtures("threshold")
async def test_a_higher_threshold_or_zero_is_left_alone(stack: Stack) -> None:
    gc.set_threshold(50_000, *gc.get_threshold()[1:])
    await stack.server(Echo(), gc_threshold=12_345).start()
    assert gc.get_threshold()[0] == 50_000

    gc.set_threshold(700, *gc.get_threshold()[1:])
    other = stack.server(Echo(), name=stack.name + "-off", gc_threshold=0)
    await other.start()
    assert gc.get_threshold()[0] == 700


def test_the_option_is_checked_and_read_from_the_environment() -> None:
    assert ServerOptions().gc_threshold == 10_000
    with pytest.raises(InvalidOption, match="gc_threshold"):
        ServerOptions(gc_threshold=-1)
    service = micro.Service("gc-env", environ={"MICRO_SERVER_GC_THRESHOLD": "0"}, handle_signals=False)
    assert service.server.options.gc_threshold == 0
