"""The conformance contracts against etcd (``micro conformance registry etcd`` etc. run the same)."""

from __future__ import annotations

from typing import Any, ClassVar

from micro.config import Source
from micro_conformance.config import ConfigSourceContract
from micro_conformance.registry import RegistryContract
from micro_conformance.sync import SyncContract
from micro_etcd import EtcdSourceOptions
from micro_etcd._client import prefix_end
from micro_etcd.config import EtcdSource


class TestEtcdRegistry(RegistryContract):
    name = "etcd"
    # Each test's names are unique already; a folder of its own keeps this suite's keys apart from real ones.
    options: ClassVar = {"prefix": "micro-test/registry/"}


class TestEtcdSync(SyncContract):
    name = "etcd"
    options: ClassVar = {"root": "micro-test/sync/"}


class TestEtcdSource(ConfigSourceContract):
    name = "etcd"

    async def make(self, **options: Any) -> Source:
        # Every instance of one test reads the same key folder, and no other test's.
        options.setdefault("prefix", f"micro-test/config/{self.names('cfg')}/")
        prefix = options["prefix"]
        self.later(lambda: _delete_tree(prefix))
        return await super().make(**options)

    async def corrupt(self, source: Source) -> None:
        """A key holding a value where the seeded keys make a folder (``database`` next to ``database/host``)."""
        assert isinstance(source, EtcdSource)
        client = await source._client()
        await client.put(f"{source.prefix}database", "not a folder", "corrupting")


async def _delete_tree(prefix: str) -> None:
    async with EtcdSource(EtcdSourceOptions(prefix=prefix)) as cleaner:
        client = await cleaner._client()
        await client.delete(prefix, prefix_end(prefix), "cleaning up")
