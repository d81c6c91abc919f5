"""The shared pieces: case ids, unique names, polling, resolution, and the docs' case index."""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path

import pytest
from micro.errors import InvalidOption, PluginNotFound
from micro.registry.memory import MemoryRegistry
from micro.selector.cache import RoundRobinSelector
from micro_conformance.base import Names, case_id, create, eventually
from micro_conformance.config import FileSourceContract
from micro_conformance.runner import CONTRACTS, contract_class, contract_for

DOCS = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"


def test_case_id_comes_from_the_test_name() -> None:
    assert case_id("test_s03_missing_key") == "S03"
    assert case_id("test_x00_declared") == "X00"
    assert case_id("test_something_else") is None


def test_names_are_unique_and_share_the_run_prefix() -> None:
    a, b = Names("run1"), Names("run1")
    assert a.prefix != b.prefix
    assert a("key").startswith("mc-run1-")
    assert a("key").startswith(a.prefix)
    assert re.fullmatch(r"[a-z0-9-]+", a("label")), "names must be valid keys, topics and DNS labels"


async def test_eventually_returns_once_the_check_holds() -> None:
    calls = []

    def check() -> int:
        calls.append(1)
        assert len(calls) >= 3
        return len(calls)

    assert await eventually(check, timeout=1) == 3


async def test_eventually_retries_failed_pytest_raises_and_false() -> None:
    state = {"n": 0}

    async def check() -> bool:
        state["n"] += 1
        if state["n"] < 2:
            with pytest.raises(KeyError):
                pass
        return state["n"] >= 4

    await eventually(check, timeout=1)
    assert state["n"] == 4


async def test_eventually_fails_at_the_deadline_with_the_last_reason() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AssertionError, match=r"the thing did not hold within 0.2s: never"):
        await eventually(lambda: (_ for _ in ()).throw(AssertionError("never")), timeout=0.2, what="the thing")
    assert 0.2 <= loop.time() - started < 1.0


async def test_eventually_does_not_swallow_other_errors() -> None:
    with pytest.raises(ZeroDivisionError):
        await eventually(lambda: 1 / 0, timeout=1)


def test_create_resolves_like_the_environment_and_passes_wiring() -> None:
    registry = MemoryRegistry()
    selector = create("selector", "roundrobin", strings={"cooldown": "250ms"}, registry=registry)
    assert isinstance(selector, RoundRobinSelector)
    assert selector.registry is registry
    assert selector.options.cooldown == 0.25
    assert selector.name == "roundrobin"
    with pytest.raises(InvalidOption, match="MICRO_SELECTOR_COOLDOWN"):
        create("selector", "roundrobin", strings={"cooldown": "soon"})
    with pytest.raises(PluginNotFound, match="no store named 'nope'"):
        create("store", "nope")


def test_contract_class_fits_the_contract_to_the_implementation() -> None:
    cls = contract_class("selector", "roundrobin", {"ttl": "5s"})
    assert cls.strategy == "roundrobin"  # type: ignore[attr-defined]
    assert (cls.name, dict(cls.option_strings)) == ("roundrobin", {"ttl": "5s"})
    assert cls.__name__.startswith("Test")
    assert issubclass(contract_class("config", "file"), FileSourceContract)
    assert not issubclass(contract_class("config", "memory"), FileSourceContract)


def test_every_case_is_in_the_docs_index() -> None:
    text = DOCS.read_text()
    listed: set[str] = set()
    for letter, first, last in re.findall(r"\b([A-Z])(\d\d)(?:-[A-Z]?(\d\d))?\b", text):
        for number in range(int(first), int(last or first) + 1):
            listed.add(f"{letter}{number:02d}")
    for interface in CONTRACTS:
        contract = contract_for(interface)
        assert f"| {interface} |" in text, f"{interface} has no row in the docs' case index"
        ids = {case_id(name) for name, _ in inspect.getmembers(contract, inspect.isfunction)} - {None}
        missing = sorted(i for i in ids if i not in listed)
        assert not missing, f"cases of {interface} missing from docs/conformance.md: {missing}"
