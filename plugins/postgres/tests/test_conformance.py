"""The asyncmicro-conformance contracts against the PostgreSQL implementations, each test in its own namespace."""

from __future__ import annotations

from typing import Any

from micro_conformance.base import Contract
from micro_conformance.store import StoreContract
from micro_conformance.sync import SyncContract

from .conftest import ADDRESS, drop_schema, unique_name


class TestPostgresStore(StoreContract):
    """Every instance a test makes shares one fresh schema, dropped afterwards."""

    name = "postgres"
    _schema: str | None = None
    _for_test: str | None = None

    async def make(self, **options: Any) -> Any:
        contract: Contract[Any] = self
        if self._for_test != contract.names.prefix:
            self._for_test = contract.names.prefix
            self._schema = schema = unique_name()
            contract.later(lambda: drop_schema(schema))
        return await super().make(address=(ADDRESS,), schema=self._schema, **options)


class TestPostgresSync(SyncContract):
    """Every instance a test makes shares one fresh lock prefix (advisory lock ids are hashed from it)."""

    name = "postgres"
    _prefix: str | None = None
    _for_test: str | None = None

    async def make(self, **options: Any) -> Any:
        if self._for_test != self.names.prefix:
            self._for_test = self.names.prefix
            self._prefix = f"{unique_name()}/"
        options.setdefault("prefix", self._prefix)  # Y18 gives its instances prefixes of their own
        return await super().make(address=(ADDRESS,), **options)
