"""micro.context: metadata and deadline layers, isolation between tasks, the server's serving scope."""

from __future__ import annotations

import asyncio
import time

import pytest
from micro import context
from micro.metadata import Metadata


def test_empty_outside_any_call() -> None:
    assert context.metadata() == {}
    assert context.get("X-User") is None
    assert context.get("X-User", "anon") == "anon"
    assert context.deadline() is None
    assert context.remaining() is None
    assert context.response_metadata() is None


def test_with_metadata_layers_and_restores() -> None:
    with context.with_metadata({"X-User": "bob"}) as outer:
        assert outer == {"X-User": "bob"}
        with context.with_metadata(trace="1", **{"x-user": "alice"}):
            assert context.get("X-USER") == "alice"  # case-insensitive, inner wins
            assert context.get("trace") == "1"
        assert context.metadata() == {"X-User": "bob"}
    assert context.metadata() == {}


def test_metadata_copy_does_not_leak() -> None:
    with context.with_metadata({"a": "1"}):
        copy = context.metadata()
        copy["a"] = "changed"
        assert context.get("a") == "1"


def test_deadlines_only_shrink() -> None:
    with context.with_timeout(10) as outer:
        with context.with_timeout(60) as inner:
            assert inner == outer  # cannot extend the caller's deadline
        with context.with_timeout(1) as shorter:
            assert shorter < outer
            remaining = context.remaining()
            assert remaining is not None
            assert 0 < remaining <= 1
        assert context.deadline() == outer
    assert context.deadline() is None


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_bad_timeout(bad: float) -> None:
    with pytest.raises(ValueError, match="timeout"), context.with_timeout(bad):
        pass


def test_restored_after_exception() -> None:
    with pytest.raises(RuntimeError), context.with_metadata(a="1"), context.with_timeout(5):
        raise RuntimeError
    assert context.metadata() == {}
    assert context.deadline() is None


def test_set_header_outside_handler() -> None:
    with pytest.raises(RuntimeError, match="outside a request handler"):
        context.set_header("X", "1")


def test_serving_replaces_instead_of_merging() -> None:
    inbound = Metadata({"Authorization": "Bearer t"})
    when = time.monotonic() + 30
    with context.with_metadata(leaked="yes"), context.with_timeout(1):
        with context.serving(inbound, when) as response:
            assert context.metadata() == {"Authorization": "Bearer t"}
            assert context.deadline() == when  # the request's own deadline, not the serving task's
            context.set_header("X-Served-By", "node-1")
            assert response == {"X-Served-By": "node-1"}
        assert context.get("leaked") == "yes"
    assert context.response_metadata() is None


async def test_tasks_are_isolated() -> None:
    seen: dict[str, str | None] = {}
    ready = asyncio.Event()

    async def worker(name: str) -> None:
        with context.with_metadata(user=name):
            ready.set() if name == "b" else None
            await asyncio.sleep(0)
            seen[name] = context.get("user")

    await asyncio.gather(worker("a"), worker("b"))
    assert seen == {"a": "a", "b": "b"}
    assert context.get("user") is None


async def test_child_task_inherits_at_creation() -> None:
    with context.with_metadata(user="bob"), context.with_timeout(5):
        deadline = context.deadline()
        child = asyncio.create_task(asyncio.sleep(0, result=(context.get("user"), context.deadline())))
        assert await child == ("bob", deadline)
