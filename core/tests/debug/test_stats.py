import asyncio
import json
import sys
import time

import micro
import pytest
from micro.debug.stats import MemoryStats, Stat, StatsOptions, rss_bytes
from micro.errors import BadRequest, InvalidOption


def test_created_by_name_with_options():
    stats = micro.create("stats", environ={"MICRO_STATS_INTERVAL": "250ms", "MICRO_STATS_SIZE": "10"})
    assert isinstance(stats, MemoryStats)
    assert stats.options.interval == 0.25
    assert stats.options.size == 10
    with pytest.raises(InvalidOption, match="MICRO_STATS_INTERVAL"):
        micro.create("stats", environ={"MICRO_STATS_INTERVAL": "0"})
    with pytest.raises(InvalidOption, match="size"):
        StatsOptions(size=0)


async def test_record_counts_requests_and_errors():
    stats = MemoryStats()
    stats.record()
    stats.record(None)
    stats.record(ValueError("x"))
    (now,) = await stats.read()
    assert (now.requests, now.errors) == (3, 1)


async def test_snapshot_describes_the_process():
    stats = MemoryStats()
    before = time.time()
    (now,) = await stats.read()
    assert now.started <= before <= now.timestamp
    assert now.uptime >= 0
    assert now.threads >= 1
    assert len(now.gc) == 3
    if sys.platform == "linux":
        assert 1024 * 1024 < now.memory < 64 * rss_bytes()
    assert Stat.from_dict(json.loads(json.dumps(now.to_dict()))) == now
    with pytest.raises(BadRequest):
        Stat.from_dict({"timestamp": 1})


async def test_started_stats_take_snapshots_into_a_ring_until_closed():
    stats = MemoryStats(StatsOptions(interval=0.01, size=3))
    async with stats:
        deadline = time.monotonic() + 5
        while len(await stats.read()) < 4:  # three stored + the fresh one
            assert time.monotonic() < deadline, "no periodic snapshots"
            await asyncio.sleep(0.01)
        stats.record()
    stored = (await stats.read())[:-1]
    assert len(stored) == 3
    assert [s.timestamp for s in stored] == sorted(s.timestamp for s in stored)
    await asyncio.sleep(0.05)
    assert (await stats.read())[:-1] == stored  # closed: no more snapshots
    await stats.close()


async def test_write_stores_a_given_snapshot():
    stats = MemoryStats(StatsOptions(size=2))
    snapshot = stats.snapshot()
    stats.write(snapshot)
    assert (await stats.read())[0] is snapshot
