"""The asyncmicro-conformance contracts against the NATS broker (core and JetStream), registry and transport.

Every test gets subjects and a stream of its own, removed afterwards.
"""

from __future__ import annotations

from typing import Any

from micro_conformance.base import Contract
from micro_conformance.broker import BrokerContract
from micro_conformance.registry import RegistryContract
from micro_conformance.transport import TransportContract

from .conftest import delete_buckets, delete_streams, isolated, unique


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


class TestNatsRegistry(RegistryContract):
    name = "nats"
    _bucket: str | None = None
    _for_test: str | None = None

    async def make(self, **options: Any) -> Any:
        """Every instance of a test shares a bucket of its own, deleted afterwards."""
        if self._for_test != self.names.prefix:
            self._for_test = self.names.prefix
            self._bucket = bucket = unique()
            self.later(lambda: delete_buckets(bucket))
        return await super().make(bucket=self._bucket, **options)


class TestNatsTransport(TransportContract):
    """Listen names are random per listener (port 0) or made from the test's unique prefix, so runs never meet."""

    name = "nats"
    # A name nobody listens on: the contract's 127.0.0.1:9 would do, but another run could listen there.
    dead_address = f"{unique()}:9"
