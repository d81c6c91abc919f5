"""Every contract against every embedded default, through the same resolution as ``MICRO_<INTERFACE>``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from micro_conformance.broker import BrokerContract
from micro_conformance.store import StoreContract


class TestMemoryStore(StoreContract):
    name = "memory"


class TestSQLiteStore(StoreContract):
    name = "sqlite"

    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        self.path = str(tmp_path / "store.db")

    async def make(self, **options: Any):
        return await super().make(path=self.path, **options)


class TestMemoryBroker(BrokerContract):
    name = "memory"


class TestHTTPBroker(BrokerContract):
    name = "http"
