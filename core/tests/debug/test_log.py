import asyncio
import json
import logging
import threading
import time

import micro
import pytest
from micro.debug.log import LogOptions, LogRecord, MemoryLog
from micro.errors import BadRequest, InvalidOption


def record(message: str, level: str = "info", at: float | None = None) -> LogRecord:
    return LogRecord(time.time() if at is None else at, level, message, {})


async def test_created_by_name_with_level_from_environment():
    log = micro.create("log", environ={"MICRO_LOG_LEVEL": "debug", "MICRO_LOG_SIZE": "7"})
    assert isinstance(log, MemoryLog)
    assert log.name == "memory"
    assert log.options.level == "debug"
    assert log.options.size == 7


def test_unknown_level_in_environment_names_the_variable():
    with pytest.raises(InvalidOption, match="MICRO_LOG_LEVEL"):
        micro.create("log", environ={"MICRO_LOG_LEVEL": "loud"})


def test_options_reject_empty_ring():
    with pytest.raises(InvalidOption, match="size"):
        LogOptions(size=0)


async def test_ring_buffer_keeps_the_last_size_records():
    log = MemoryLog(LogOptions(size=3))
    for i in range(5):
        log.write(record(f"m{i}"))
    assert [r.message for r in await log.read()] == ["m2", "m3", "m4"]


async def test_micro_log_level_decides_what_is_captured():
    log = micro.create("log", environ={"MICRO_LOG_LEVEL": "warning", "MICRO_LOG_STDERR": "false"})
    async with log:
        logger = logging.getLogger("micro.test.level")
        logger.info("quiet")
        logger.warning("loud")
        logger.error("louder")
    assert [r.message for r in await log.read()] == ["loud", "louder"]

    verbose = micro.create("log", environ={"MICRO_LOG_LEVEL": "debug", "MICRO_LOG_STDERR": "0"})
    async with verbose:
        logging.getLogger("micro.test.level").debug("detail %d", 42)
    assert [(r.level, r.message) for r in await verbose.read()] == [("debug", "detail 42")]


async def test_only_micro_loggers_unless_root():
    log = MemoryLog(LogOptions(stderr=False))
    async with log:
        logging.getLogger("elsewhere").warning("not ours")
        logging.getLogger("micro").warning("ours")
    assert [r.message for r in await log.read()] == ["ours"]

    everything = MemoryLog(LogOptions(stderr=False, root=True))
    async with everything:
        logging.getLogger("elsewhere").warning("theirs")
        logging.getLogger("micro.x").warning("ours")
    assert [r.message for r in await everything.read()] == ["theirs", "ours"]


async def test_close_detaches_and_restores_the_level():
    logger = logging.getLogger("micro")
    before_level, before_handlers = logger.level, list(logger.handlers)
    log = MemoryLog(LogOptions(level="debug", stderr=False))
    await log.start()
    await log.start()  # idempotent: one handler only
    assert len(logger.handlers) == len(before_handlers) + 1
    assert logger.level == logging.DEBUG
    await log.close()
    await log.close()
    assert logger.level == before_level
    assert logger.handlers == before_handlers
    logging.getLogger("micro.after").error("after close")
    assert await log.read() == []


async def test_records_are_structured_and_json_able():
    log = MemoryLog(LogOptions(stderr=False))
    async with log:
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("micro.handler").exception("failed for %s", "alice", extra={"request_id": "r1", "n": 3})
    (found,) = await log.read()
    assert found.level == "error"
    assert found.message == "failed for alice"
    assert found.metadata["logger"] == "micro.handler"
    assert found.metadata["request_id"] == "r1"
    assert found.metadata["n"] == "3"
    assert "ValueError: boom" in found.metadata["exception"]
    assert LogRecord.from_dict(json.loads(json.dumps(found.to_dict()))) == found
    assert "ERROR" in found.format()
    assert "micro.handler: failed for alice" in found.format()


def test_from_dict_rejects_garbage():
    with pytest.raises(BadRequest):
        LogRecord.from_dict({"level": "info"})


async def test_stderr_gets_a_readable_line(capsys):
    log = MemoryLog(LogOptions())
    async with log:
        logging.getLogger("micro.cli").info("hello %s", "world")
    err = capsys.readouterr().err
    assert "INFO" in err
    assert "micro.cli: hello world" in err


async def test_read_filters_count_since_and_level():
    log = MemoryLog()
    now = time.time()
    log.write(record("old", "error", now - 100))
    log.write(record("a", "debug", now))
    log.write(record("b", "warning", now + 1))
    log.write(record("c", "error", now + 2))
    log.write(record("d", "info", now + 3))

    assert [r.message for r in await log.read(count=2)] == ["c", "d"]
    assert [r.message for r in await log.read(count=0)] == []
    assert [r.message for r in await log.read(since=now)] == ["a", "b", "c", "d"]
    assert [r.message for r in await log.read(level="warn")] == ["old", "b", "c"]
    assert [r.message for r in await log.read(level="WARNING", since=now, count=1)] == ["c"]


async def test_read_rejects_bad_filters():
    log = MemoryLog()
    with pytest.raises(BadRequest, match="count"):
        await log.read(count=-1)
    with pytest.raises(BadRequest, match="level"):
        await log.read(level="chatty")


async def test_stream_yields_new_records_until_stopped():
    log = MemoryLog()
    log.write(record("history"))
    stream = await log.stream()
    log.write(record("one"))
    worker = threading.Thread(target=log.write, args=(record("from a thread"),))
    worker.start()
    worker.join()

    received = [await asyncio.wait_for(anext(stream), 2), await asyncio.wait_for(anext(stream), 2)]
    assert [r.message for r in received] == ["one", "from a thread"]

    log.write(record("queued before stop"))
    stream.stop()
    log.write(record("after stop"))
    assert [r.message async for r in stream] == ["queued before stop"]


async def test_stream_consumer_waiting_is_woken_and_close_ends_it():
    log = MemoryLog()
    async with await log.stream() as stream:

        async def first() -> LogRecord:
            return await anext(stream)

        waiting = asyncio.create_task(first())
        await asyncio.sleep(0)
        log.write(record("late"))
        assert (await asyncio.wait_for(waiting, 2)).message == "late"
    assert stream.stopped

    other = await log.stream()
    await log.close()
    assert [r async for r in other] == []


async def test_slow_stream_drops_the_oldest():
    log = MemoryLog(LogOptions(size=2))
    stream = await log.stream()
    for i in range(5):
        log.write(record(f"m{i}"))
    stream.stop()
    assert [r.message async for r in stream] == ["m3", "m4"]
    assert stream.dropped == 3
