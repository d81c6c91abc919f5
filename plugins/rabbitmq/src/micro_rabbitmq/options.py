"""Settings of the ``rabbitmq`` broker: ``MICRO_BROKER_<FIELD>`` while ``MICRO_BROKER=rabbitmq``."""

from __future__ import annotations

import math
import re
import urllib.parse
from dataclasses import dataclass
from typing import Final

from micro.broker import BrokerOptions
from micro.errors import InvalidOption

__all__ = ["DEFAULT_URL", "RabbitMQBrokerOptions", "mask_url"]

#: The server used when ``address`` is empty: a local RabbitMQ with its default account.
DEFAULT_URL: Final = "amqp://guest:guest@127.0.0.1:5672/"

# RabbitMQ's limit for exchange and queue names (AMQP short strings), and the characters AMQP allows in them.
_SHORT_STRING: Final = 255
_NAME: Final = re.compile(r"^[a-zA-Z0-9_.:@#,/+-]+$")


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _seconds(value: object, option: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidOption(f"must be a positive number of seconds, got {value!r}", option=option)


def _integer(value: object, option: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidOption(f"must be an integer >= {low}, got {value!r}", option=option)


@dataclass(frozen=True, kw_only=True, slots=True)
class RabbitMQBrokerOptions(BrokerOptions):
    """Settings of :class:`~micro_rabbitmq.broker.RabbitMQBroker`.

    ``address`` (``MICRO_BROKER_ADDRESS``) holds AMQP URLs
    (``amqp://user:password@host:5672/vhost``, or ``amqps://`` for TLS); they are
    tried in order at start-up and the first that answers is kept, reconnects
    included. Empty means :data:`DEFAULT_URL`.
    """

    #: The topic exchange every message is published to (``MICRO_BROKER_EXCHANGE``).
    exchange: str = "micro"
    #: Durable exchange and queue-group queues, persistent messages: they survive a RabbitMQ restart.
    #: Every process sharing the exchange must agree (RabbitMQ refuses to redeclare it differently).
    durable: bool = True
    #: Deliveries a subscriber may hold unacknowledged (RabbitMQ ``basic.qos``); at least 1.
    prefetch_count: int = 32
    #: Wait for RabbitMQ's publisher confirm before :meth:`publish` returns.
    confirm: bool = True
    #: How many times a message nacked with requeue (or whose handler failed) is delivered again
    #: before it is dead-lettered (if ``dead_letter_exchange`` is set) or dropped, with a log line.
    max_redeliveries: int = 3
    #: An exchange that rejected and exhausted messages are routed to (``x-dead-letter-exchange``).
    dead_letter_exchange: str | None = None
    #: Seconds a queue-group queue may stay without consumers before RabbitMQ deletes it, backlog
    #: included (``x-expires``); ``None`` keeps it until deleted by hand.
    queue_expires: float | None = None
    #: Seconds to open the connection at start-up before :class:`~micro.errors.BackendUnavailable`.
    connect_timeout: float = 5.0
    #: Seconds between reconnection attempts once the connection is lost.
    reconnect_interval: float = 1.0
    #: Seconds :meth:`publish` keeps trying (through a reconnect, waiting for the confirm) before it fails.
    publish_timeout: float = 10.0
    #: Seconds a running handler may take to finish when its subscriber is removed, before it is cancelled.
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        BrokerOptions.__post_init__(self)
        for url in self.address:
            scheme = urllib.parse.urlsplit(url).scheme
            if scheme not in ("amqp", "amqps"):
                raise InvalidOption(f"expected an amqp:// or amqps:// URL, got {mask_url(url)!r}", option="address")
        for option in ("exchange", "dead_letter_exchange"):
            value = getattr(self, option)
            if value is None and option == "dead_letter_exchange":
                continue
            if not isinstance(value, str) or not _NAME.match(value) or len(value) > _SHORT_STRING:
                raise InvalidOption(
                    f"must be 1 to {_SHORT_STRING} characters of a-z, A-Z, 0-9 and _.:@#,/+-, got {value!r}",
                    option=option,
                )
            if value.startswith("amq."):
                raise InvalidOption(f"names starting with 'amq.' are reserved by RabbitMQ: {value!r}", option=option)
        for option in ("durable", "confirm"):
            if not isinstance(getattr(self, option), bool):
                raise InvalidOption(f"must be true or false, got {getattr(self, option)!r}", option=option)
        _integer(self.prefetch_count, "prefetch_count", 1)
        _integer(self.max_redeliveries, "max_redeliveries", 0)
        _seconds(self.queue_expires, "queue_expires", optional=True)
        for option in ("connect_timeout", "reconnect_interval", "publish_timeout", "close_timeout"):
            _seconds(getattr(self, option), option)

    @property
    def urls(self) -> tuple[str, ...]:
        """The servers to try, in order."""
        return self.address or (DEFAULT_URL,)
