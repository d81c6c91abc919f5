"""The conformance contracts against the Consul agent (``micro conformance registry consul`` etc. run the same)."""

from __future__ import annotations

from typing import Any, ClassVar

from micro.config import Source
from micro_conformance.config import ConfigSourceContract
from micro_conformance.registry import RegistryContract
from micro_conformance.sync import SyncContract
from micro_consul import ConsulSourceOptions
from micro_consul.config import ConsulSource


class TestConsulRegistry(RegistryContract):
    name = "consul"


class TestConsulSync(SyncContract):
    name = "consul"
    # Each test's lock ids are unique already; a folder of its own keeps this suite's keys apart from real ones.
    options: ClassVar = {"root": "micro-test/sync/"}


class TestConsulSource(ConfigSourceContract):
    name = "consul"

    async def make(self, **options: Any) -> Source:
        # Every instance of one test reads the same KV folder, and no other test's.
        options.setdefault("prefix", f"micro-test/config/{self.names('cfg')}/")
        prefix = options["prefix"]
        self.later(lambda: _delete_tree(prefix))
        return await super().make(**options)

    async def corrupt(self, source: Source) -> None:
        """A key holding a value where the seeded keys make a folder (``database`` next to ``database/host``)."""
        assert isinstance(source, ConsulSource)
        client = await source._open()
        await client.call("corrupting", lambda api: api.kv.put(f"{source.prefix}database", "not a folder"))


async def _delete_tree(prefix: str) -> None:
    async with ConsulSource(ConsulSourceOptions(prefix=prefix)) as cleaner:
        client = await cleaner._open()
        await client.call("cleaning up", lambda api: api.kv.delete(prefix, recurse=True))
