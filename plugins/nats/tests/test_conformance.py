"""The asyncmicro-conformance broker contract against the NATS broker, core and JetStream.

Every test gets subjects and a stream of its own, removed afterwards.
"""

from __future__ import annotations

from typing import Any

from micro_conformance.base import Contract
from micro_conformance.broker import BrokerContract

from .conftest import delete_streams, isolated, unique


class _Isolated:
    """Gives every instance a test makes the same fresh subjects and stream, and deletes the stream afterwards."""

    _names: dict[str, Any] | None = None
    _for_test: str | None = None
    jetstream = False

    async def make(self, **options: Any) -> Any:
        contract: Contract[Any] = self  # type: ignore[assignment]
        if self._for_test != contract.names.prefix:
            self._for_test = contract.names.prefix
            self._names = names = isolated(unique())
            contract.later(lambda: delete_streams(names["stream"]))
        assert self._names is not None
        return await super().make(**self._names, jetstream=self.jetstream, **options)  # type: ignore[misc]


class TestNatsCoreBroker(_Isolated, BrokerContract):
    name = "nats"


class TestNatsJetStreamBroker(_Isolated, BrokerContract):
    name = "nats"
    jetstream = True
    # B24's slow consumer falls far behind this bound: publishes fail once it is full (discard=new).
    slow_consumer_options = {"stream_max_msgs": 20}
