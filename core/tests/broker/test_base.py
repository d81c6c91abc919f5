"""The value types and helpers shared by every broker."""

from __future__ import annotations

import pytest
from micro.broker import Event, Message, check_topic, dispatch
from micro.broker.options import BrokerOptions
from micro.errors import BadRequest, InvalidOption


def test_message_copies_body_and_folds_header_case():
    message = Message(bytearray(b"hi"), {"Content-Type": "text/plain"})
    assert message.body == b"hi"
    assert isinstance(message.body, bytes)
    assert message.header["content-type"] == "text/plain"
    assert message == Message(b"hi", {"content-type": "text/plain"})
    assert message != Message(b"hi")


@pytest.mark.parametrize("body", ["text", 1, None])
def test_message_body_must_be_bytes(body):
    with pytest.raises(BadRequest):
        Message(body)


def test_message_header_values_must_be_strings():
    with pytest.raises(BadRequest):
        Message(b"", {"a": 1})  # type: ignore[dict-item]


@pytest.mark.parametrize("topic", ["", " ", "a b", "a\tb", "x\n", None, 3])
def test_bad_topics_are_bad_requests(topic):
    with pytest.raises(BadRequest):
        check_topic(topic)


def test_good_topic_is_returned():
    assert check_topic("go.micro.topic-1/ü") == "go.micro.topic-1/ü"


@pytest.mark.parametrize("size", [0, -1, True, "1", 2**30 + 1, 2**63, 10**400])
def test_max_message_size_is_checked(size):
    with pytest.raises(InvalidOption):
        BrokerOptions(max_message_size=size)


def test_address_entries_are_checked():
    with pytest.raises(InvalidOption):
        BrokerOptions(address=("",))


async def test_first_settlement_wins():
    event = Event("t", Message())
    await event.nack(requeue=False)
    await event.ack()
    assert event.outcome == "drop"


async def test_dispatch_auto_ack_acks_on_return():
    async def handler(event: Event) -> None:
        pass

    event = Event("t", Message())
    assert await dispatch(handler, event, auto_ack=True) == "ack"
    assert event.error is None


async def test_dispatch_requeues_and_records_a_handler_exception(caplog):
    async def handler(event: Event) -> None:
        raise RuntimeError("boom")

    event = Event("t", Message())
    assert await dispatch(handler, event, auto_ack=True) == "requeue"
    assert isinstance(event.error, RuntimeError)
    assert "boom" in caplog.text


async def test_dispatch_manual_ack_requeues_an_unsettled_event():
    async def handler(event: Event) -> None:
        pass

    assert await dispatch(handler, Event("t", Message()), auto_ack=False) == "requeue"


async def test_dispatch_keeps_the_handlers_own_settlement():
    async def handler(event: Event) -> None:
        await event.ack()
        raise RuntimeError("after ack")

    event = Event("t", Message())
    assert await dispatch(handler, event, auto_ack=False) == "ack"
    assert isinstance(event.error, RuntimeError)
