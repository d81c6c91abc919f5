"""Credentials never reach the debug log (read over RPC by Debug.logs), its stderr copy, or a span's attributes."""

import logging

import pytest
from micro.debug.log import LogOptions, MemoryLog
from micro.debug.trace import MemoryTracer

URL = "amqp://guest:rabbit-pw-77@mq.internal:5672/"


async def test_log_records_and_their_tracebacks_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    log = MemoryLog(LogOptions(level="info", stderr=True))
    await log.start()
    try:
        logger = logging.getLogger("micro.test.redaction")
        logger.warning("connecting to %s with Authorization: Bearer tok-123", URL, extra={"api_key": "k-9"})
        try:
            raise ConnectionError(f"refused: {URL}")
        except ConnectionError:
            logger.exception("giving up")
    finally:
        await log.close()
    first, second = await log.read()
    assert first.message == "connecting to amqp://guest:***@mq.internal:5672/ with Authorization: Bearer ***"
    assert first.metadata["api_key"] == "***"
    assert "rabbit-pw-77" not in second.metadata["exception"]
    assert "amqp://guest:***@mq.internal" in second.metadata["exception"]
    printed = capsys.readouterr().err
    assert "giving up" in printed
    assert "rabbit-pw-77" not in printed
    assert "tok-123" not in printed


async def test_a_span_error_is_masked() -> None:
    tracer = MemoryTracer()
    with pytest.raises(RuntimeError), tracer.start_span("work"):
        raise RuntimeError(f"cannot open {URL}")
    (span,) = await tracer.read()
    assert span.metadata["error"] == "RuntimeError: cannot open amqp://guest:***@mq.internal:5672/"
