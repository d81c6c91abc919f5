"""Fixtures shared by the registry tests: one ``registry`` per implementation, each isolated."""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from micro.registry import LocalRegistryOptions, MDNSRegistryOptions, Registry, Result, Watcher
from micro.registry.local import LocalRegistry
from micro.registry.memory import MemoryRegistry

T = TypeVar("T")


@functools.cache
def loopback_multicast_problem() -> str | None:
    """Why multicast on 127.0.0.1 does not work here, or ``None`` if it does.

    Probed with plain sockets on a throw-away port (not 5353), so a failure here is the
    machine's, not the registry's. Works on Linux even when ``lo`` lacks the MULTICAST flag.
    """
    group = "224.0.0.251"
    try:
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    except OSError as exc:
        return f"cannot create UDP sockets: {exc}"
    with receiver, sender:
        try:
            receiver.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            receiver.bind(("", 0))
            port = receiver.getsockname()[1]
            membership = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("127.0.0.1"))
            receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            receiver.settimeout(1.0)
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            sender.sendto(b"micro-probe", (group, port))
            data = receiver.recv(64)
        except OSError as exc:
            return f"multicast to {group} over 127.0.0.1 fails on this machine: {exc}"
    return None if data == b"micro-probe" else "multicast over 127.0.0.1 delivered something else"


def mdns_options() -> MDNSRegistryOptions:
    """mDNS on the loopback interface only, never on a real network."""
    return MDNSRegistryOptions(interfaces=("127.0.0.1",), timeout=0.2)


@pytest.fixture
def unique() -> str:
    """A service name no other test (or earlier run) uses."""
    return f"test.{uuid.uuid4().hex[:12]}"


def make_registry(kind: str, tmp_path: Path) -> Registry:
    if kind == "memory":
        return MemoryRegistry()
    if kind == "local":
        return LocalRegistry(LocalRegistryOptions(path=str(tmp_path / "registry.db"), poll_interval=0.02))
    if kind == "mdns":
        from micro.registry.mdns import MDNSRegistry

        return MDNSRegistry(mdns_options())
    raise AssertionError(kind)


@pytest.fixture(params=["memory", "local", pytest.param("mdns", marks=pytest.mark.multicast)])
async def registry(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Registry]:
    if request.param == "mdns" and (problem := loopback_multicast_problem()):
        pytest.skip(f"mDNS tests bind to 127.0.0.1 only, and {problem}")
    reg = make_registry(request.param, tmp_path)
    await reg.start()
    try:
        yield reg
    finally:
        await reg.close()


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 3.0) -> T:
    """``await check()`` until it stops raising AssertionError, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.01)


async def next_result(watcher: Watcher, timeout: float = 3.0) -> Result:
    return await asyncio.wait_for(anext(watcher), timeout)


async def eventually_true(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds (generous: the machine is shared)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)
