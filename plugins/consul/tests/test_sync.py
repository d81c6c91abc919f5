"""The Consul sync beyond the contract: sessions, the KV layout of a lock, lapses, lost sessions, faults."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import micro
import pytest
from micro.errors import BackendUnavailable, InvalidOption, LockHeld, LockNotFound
from micro_conformance import eventually
from micro_consul import ConsulSyncOptions
from micro_consul.sync import ConsulSync

from .conftest import Agent

Maker = Callable[..., Awaitable[ConsulSync]]


@pytest.fixture
async def make(agent: Agent, unique: Callable[[str], str]) -> AsyncIterator[Maker]:
    """Started syncs sharing one KV folder of this test's own (deleted afterwards)."""
    root = f"micro-test/sync/{unique('locks')}/"
    made: list[ConsulSync] = []

    async def factory(**options: Any) -> ConsulSync:
        options.setdefault("root", root)
        sync = ConsulSync(ConsulSyncOptions(**options))
        made.append(sync)
        await sync.start()
        return sync

    yield factory
    for sync in made:
        await sync.close()
    await agent.delete(f"/v1/kv/{root}?recurse")


async def entry(agent: Agent, key: str) -> dict[str, Any] | None:
    status, body = await agent.get(f"/v1/kv/{urllib.parse.quote(key)}")  # the key holds "%": quote it once more
    return body[0] if status == 200 else None


# -- options and faults ------------------------------------------------------------------------------------


@pytest.mark.offline
def test_selected_by_name_with_options_from_the_environment() -> None:
    environ = {
        "MICRO_SYNC": "consul",
        "MICRO_SYNC_ADDRESS": "127.0.0.1:8500",
        "MICRO_SYNC_PREFIX": "orders/",
        "MICRO_SYNC_ROOT": "/locks/",
        "MICRO_SYNC_SESSION_TTL": "30s",
        "MICRO_SYNC_OWNER": "worker-1",
    }
    sync = micro.get_manager().create("sync", environ=environ)
    assert isinstance(sync, ConsulSync)
    assert (sync.options.root, sync.options.prefix, sync.options.session_ttl) == ("locks/", "orders/", 30.0)
    assert sync.owner == "worker-1"
    assert sync._key(sync._name("a/b")) == "locks/orders%2Fa%2Fb"
    assert ConsulSync(ConsulSyncOptions(prefix="", root="r"))._key("..") == "r/%2E%2E"


@pytest.mark.offline
@pytest.mark.parametrize("ttl", ["5s", "2d", "0"])
def test_session_ttl_must_be_within_consul_limits(ttl: str) -> None:
    with pytest.raises(InvalidOption, match="MICRO_SYNC_SESSION_TTL"):
        micro.get_manager().create("sync", environ={"MICRO_SYNC": "consul", "MICRO_SYNC_SESSION_TTL": ttl})


@pytest.mark.offline
async def test_unreachable_agent_fails_start_naming_address_and_variable() -> None:
    sync = ConsulSync(ConsulSyncOptions(address=("127.0.0.1:1",), timeout=1))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1 \(MICRO_SYNC_ADDRESS\)"):
        await sync.start()
    assert time.monotonic() - started < 2
    await sync.close()


# -- what lands in Consul ----------------------------------------------------------------------------------


async def test_a_lock_is_a_key_acquired_by_the_instances_session(make: Maker, agent: Agent) -> None:
    sync = await make(prefix="app/")
    assert sync.session is not None
    status, info = await agent.get(f"/v1/session/info/{sync.session}")
    assert status == 200
    assert info[0]["Behavior"] == "delete"
    assert info[0]["LockDelay"] == 0
    before = time.time()
    await sync.lock("orders/42", ttl=10)
    found = await entry(agent, f"{sync.options.root}app%2Forders%2F42")
    assert found is not None
    assert found["Session"] == sync.session
    value = json.loads(base64.b64decode(found["Value"]))
    assert value["owner"] == sync.owner
    assert before + 10 <= value["expires"] <= time.time() + 10
    await sync.unlock("orders/42")
    assert await entry(agent, f"{sync.options.root}app%2Forders%2F42") is None


async def test_close_destroys_the_session_and_with_it_the_locks(make: Maker, agent: Agent) -> None:
    sync = await make()
    session = sync.session
    await sync.lock("forever", ttl=None)
    await sync.close()
    assert sync.session is None
    status, info = await agent.get(f"/v1/session/info/{session}")
    assert status == 200
    assert not info, "the session outlived close()"
    assert await entry(agent, f"{sync.options.root}forever") is None


async def test_a_waiter_takes_a_lapsed_lock_without_polling(make: Maker) -> None:
    a, b = await make(), await make()
    await a.lock("x", ttl=0.3)
    started = time.monotonic()
    await b.lock("x", ttl=10, wait=5)  # blocks on the key until a's time is up, then takes it over
    assert 0.2 < time.monotonic() - started < 2
    with pytest.raises(LockHeld):
        await a.refresh("x")


async def test_a_lost_session_loses_its_locks_and_is_replaced(make: Maker, agent: Agent) -> None:
    """What Consul does when a process stops renewing: the session is invalidated and its keys deleted."""
    a, b = await make(session_ttl=10), await make()
    await a.lock("x", ttl=None)
    leader = await a.leader("election", ttl=1)
    lost_session = a.session
    await agent.put(f"/v1/session/destroy/{lost_session}")
    assert await b.try_lock("x"), "the lock survived its session"
    await asyncio.wait_for(leader.wait_lost(), 3)
    with pytest.raises(LockHeld):
        await a.unlock("x")
    # The renewer finds the session gone at its next renewal (every session_ttl / 3) and makes a new one.
    await eventually(lambda: a.session not in (None, lost_session), timeout=8, what="a new session")
    assert await a.try_lock("y")


async def test_a_session_invalidated_underneath_is_replaced_when_next_needed(make: Maker, agent: Agent) -> None:
    sync = await make()
    lost_session = sync.session
    await agent.put(f"/v1/session/destroy/{lost_session}")
    assert await sync.try_lock("x"), "Consul refused the lost session and no new one was made"
    assert sync.session not in (None, lost_session)
    status, info = await agent.get(f"/v1/session/info/{sync.session}")
    assert status == 200
    assert info, "the new session does not exist"


async def test_a_key_not_written_by_micro_counts_as_held(make: Maker, agent: Agent) -> None:
    sync = await make()
    await agent.put(f"/v1/kv/{sync.options.root}foreign", raw=b"someone else's data")
    assert not await sync.try_lock("foreign")
    with pytest.raises(LockHeld, match="unknown"):
        await sync.unlock("foreign")


async def test_leader_election_across_instances(make: Maker) -> None:
    a, b = await make(), await make()
    first = await a.leader("election", ttl=1)
    campaign = asyncio.ensure_future(b.leader("election", ttl=1))
    await asyncio.sleep(1.5)  # past the ttl: the leader's refreshes keep it
    assert not campaign.done()
    assert first.is_leader
    await a.close()  # resigns, then destroys the session
    second = await asyncio.wait_for(campaign, 3)
    assert second.is_leader
    assert first.lost.is_set()
    await second.resign()
    with pytest.raises(LockNotFound):
        await b.unlock("election")
