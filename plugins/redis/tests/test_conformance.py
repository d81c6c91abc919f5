"""The asyncmicro-conformance contracts against the Redis implementations, each test under its own key prefix."""

from __future__ import annotations

from typing import Any

from micro_conformance.base import Contract
from micro_conformance.broker import BrokerContract
from micro_conformance.store import StoreContract
from micro_conformance.sync import SyncContract

from .conftest import purge, unique_prefix


class _Isolated:
    """Gives every instance a test makes the same fresh ``key_prefix``, and deletes its keys afterwards."""

    _key_prefix: str | None = None
    _for_test: str | None = None

    async def make(self, **options: Any) -> Any:
        contract: Contract[Any] = self  # type: ignore[assignment]
        if self._for_test != contract.names.prefix:
            self._for_test = contract.names.prefix
            self._key_prefix = key_prefix = unique_prefix()
            contract.later(lambda: purge(key_prefix))
        return await super().make(key_prefix=self._key_prefix, **options)  # type: ignore[misc]


class TestRedisStore(_Isolated, StoreContract):
    name = "redis"


class TestRedisBroker(_Isolated, BrokerContract):
    name = "redis"
    # B24's slow consumer falls far behind this bound: publishes must wait (overflow="block", the default).
    slow_consumer_options = {"max_length": 20, "overflow_timeout": 60}


class TestRedisSync(_Isolated, SyncContract):
    name = "redis"
