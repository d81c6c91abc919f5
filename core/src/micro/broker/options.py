"""Options of the broker block: instance settings and per-subscription settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..errors import InvalidOption
from ..options import Options

__all__ = ["MAX_MESSAGE_SIZE", "BrokerOptions", "SubscribeOptions"]

#: The largest ``max_message_size`` a broker accepts: a whole message is held in memory (often more
#: than once), so a bound past this is a mistake rather than a plan.
MAX_MESSAGE_SIZE: Final = 1 << 30


@dataclass(frozen=True, kw_only=True, slots=True)
class BrokerOptions(Options):
    """Settings every broker understands (``MICRO_BROKER_<FIELD>``).

    Backends subclass this for their own settings (``MemoryBrokerOptions``,
    ``HTTPBrokerOptions``).
    """

    #: Where the broker is: server addresses for a networked broker, the address to
    #: listen on for the http broker. ``MICRO_BROKER_ADDRESS=a:1,b:2``.
    address: tuple[str, ...] = ()
    #: The largest message body, in bytes, that :meth:`~micro.broker.Broker.publish`
    #: accepts; larger ones raise :class:`~micro.errors.MessageTooLarge`.
    max_message_size: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        if not isinstance(self.address, tuple) or not all(isinstance(a, str) and a.strip() for a in self.address):
            raise InvalidOption(f"expected a tuple of non-empty strings, got {self.address!r}", option="address")
        if isinstance(self.max_message_size, bool) or not isinstance(self.max_message_size, int):
            raise InvalidOption(f"expected an integer, got {self.max_message_size!r}", option="max_message_size")
        if not 0 < self.max_message_size <= MAX_MESSAGE_SIZE:
            raise InvalidOption(
                f"must be from 1 to {MAX_MESSAGE_SIZE} (1 GiB), got {self.max_message_size}", option="max_message_size"
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class SubscribeOptions:
    """How one subscription was made (Go Micro's ``SubscribeOptions``); see :meth:`Broker.subscribe`."""

    #: The queue group the subscriber competes in, or ``None`` for a broadcast subscriber.
    queue: str | None = None
    #: Whether the broker acks when the handler returns normally.
    auto_ack: bool = True
