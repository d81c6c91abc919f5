"""The config source contract (:class:`micro.config.Source`): cases C01-C12.

A source's content lives outside it (a file, the environment, a KV server), so
the contract needs three hooks from a concrete suite:

* :meth:`ConfigSourceContract.seeded`: a started source whose content is ``data``;
* :meth:`ConfigSourceContract.change`: replace that content;
* :meth:`ConfigSourceContract.corrupt`: make it undecodable.

By default they use :meth:`~micro.config.Source.write` when the source has the
``write`` capability, and skip the cases that need them otherwise. The embedded
sources have ready subclasses here (:class:`FileSourceContract`,
:class:`EnvSourceContract`, :class:`FlagSourceContract`), which ``micro
conformance`` picks by implementation class. Capabilities: ``watch``, ``write``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar, Self, cast

import pytest
from micro.config import ChangeSet, MalformedConfig, Source, SourceWatcher
from micro.config.base import checksum
from micro.errors import NotSupported

from .base import Contract, absent, create, requires

__all__ = ["ConfigSourceContract", "EnvSourceContract", "FileSourceContract", "FlagSourceContract"]

#: What every case seeds: nested, with strings (unicode included), an int and a bool, which every source can carry.
DATA: dict[str, Any] = {"database": {"host": "db.local", "port": 5432}, "debug": True, "name": "grüße"}
#: What :meth:`ConfigSourceContract.change` switches to: one value changed, one key added, one removed.
CHANGED: dict[str, Any] = {"database": {"host": "db.remote", "port": 5432}, "feature": {"on": False}}


class ConfigSourceContract(Contract[Source]):
    """The behaviour every config :class:`~micro.config.Source` shares; see :mod:`micro.config.base`."""

    interface = "config"
    known_capabilities = frozenset({"watch", "write"})

    @classmethod
    def adapt(cls, implementation: type) -> type[Self]:
        from micro.config.env import EnvSource
        from micro.config.file import FileSource
        from micro.config.flags import FlagSource

        for source, contract in (
            (FileSource, FileSourceContract),
            (EnvSource, EnvSourceContract),
            (FlagSource, FlagSourceContract),
        ):
            if issubclass(implementation, source):
                return cast(type[Self], type(contract.__name__, (contract, cls), {}))
        return cls

    # -- the hooks -------------------------------------------------------------------------

    async def seeded(self, data: dict[str, Any]) -> Source:
        """A started source whose content is ``data``; the default writes it (``write`` capability)."""
        source = await self.another()
        if "write" not in self.declared:
            pytest.skip(f"{type(source).__name__} cannot be written to; the suite needs a seeded() override")
        await source.write(ChangeSet.of(data, "conformance"))
        return source

    async def change(self, source: Source, data: dict[str, Any]) -> None:
        """Replace the content of ``source`` (made by :meth:`seeded`) with ``data``."""
        if "write" not in self.declared:
            pytest.skip(f"{type(source).__name__} cannot be written to; the suite needs a change() override")
        await source.write(ChangeSet.of(data, "conformance"))

    async def corrupt(self, source: Source) -> None:
        """Make the content of ``source`` undecodable; the default cannot."""
        pytest.skip(f"the suite has no way to corrupt a {type(source).__name__} (override corrupt())")

    def expected(self, data: dict[str, Any]) -> dict[str, Any]:
        """What reading ``data`` back gives (a source may map values, e.g. strings to numbers)."""
        return data

    @pytest.fixture
    def source(self, subject: Source) -> Source:
        return subject

    async def next_change(self, watcher: SourceWatcher) -> ChangeSet:
        return await asyncio.wait_for(watcher.__anext__(), timeout=self.timeout)

    # -- cases -----------------------------------------------------------------------------

    async def test_c01_read_returns_a_consistent_changeset(self, source: Source) -> None:
        """read() gives a ChangeSet: a str-keyed dict, its checksum, a non-empty source name, a recent timestamp."""
        changeset = await source.read()
        assert isinstance(changeset, ChangeSet)
        assert isinstance(changeset.data, dict) and all(isinstance(k, str) for k in changeset.data)
        assert changeset.checksum == checksum(changeset.data), "the checksum is not checksum(data)"
        assert isinstance(changeset.source, str) and changeset.source, "the changeset does not say where it came from"
        assert abs(changeset.timestamp - time.time()) < 60, f"timestamp {changeset.timestamp} is not now"

    async def test_c02_seeded_content_reads_back(self) -> None:
        """The content a source holds is read back, nested, with its types."""
        source = await self.seeded(DATA)
        changeset = await source.read()
        assert changeset.data == self.expected(DATA)

    async def test_c03_reads_without_change_agree(self) -> None:
        """Two reads with nothing changed in between give equal data and equal checksums."""
        source = await self.seeded(DATA)
        first, second = await source.read(), await source.read()
        assert (first.data, first.checksum) == (second.data, second.checksum)

    async def test_c04_read_after_a_change_sees_it(self) -> None:
        """After the content changes, read() returns the new data with a different checksum."""
        source = await self.seeded(DATA)
        before = await source.read()
        await self.change(source, CHANGED)
        after = await source.read()
        assert after.data == self.expected(CHANGED)
        assert after.checksum != before.checksum

    @requires("watch")
    async def test_c05_watch_delivers_changes_but_not_the_initial_reading(self) -> None:
        """A watcher yields nothing until the content changes, then a ChangeSet of the new data."""
        source = await self.seeded(DATA)
        watcher = await source.watch()
        self.later(watcher.stop)
        pending = asyncio.ensure_future(watcher.__anext__())
        await self.quiet()
        assert not pending.done(), f"the watcher yielded without a change: {pending.result() if pending.done() else ''}"
        await self.change(source, CHANGED)
        changeset = await asyncio.wait_for(pending, timeout=self.timeout)
        assert changeset.data == self.expected(CHANGED)
        assert changeset.checksum == checksum(changeset.data)

    @requires("watch")
    async def test_c06_stop_ends_a_waiting_watcher(self) -> None:
        """stop() makes a pending __anext__ raise StopAsyncIteration; stop is idempotent."""
        source = await self.seeded(DATA)
        watcher = await source.watch()
        pending = asyncio.ensure_future(watcher.__anext__())
        await asyncio.sleep(0)
        await watcher.stop()
        await watcher.stop()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, timeout=self.timeout)
        with pytest.raises(StopAsyncIteration):
            await watcher.__anext__()

    @requires("watch")
    async def test_c07_close_stops_every_watcher(self) -> None:
        """close() ends the source's watchers, including one waiting; closing twice, or at once, is fine."""
        source = await self.seeded(DATA)
        watchers = [await source.watch(), await source.watch()]
        pending = asyncio.ensure_future(watchers[0].__anext__())
        await asyncio.sleep(0)
        await asyncio.gather(source.close(), source.close())
        await source.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, timeout=self.timeout)
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(watchers[1].__anext__(), timeout=self.timeout)

    @absent("watch")
    async def test_c08_watch_without_capability_raises_not_supported(self, source: Source) -> None:
        """Without "watch", watch() raises NotSupported."""
        with pytest.raises(NotSupported):
            await source.watch()

    @requires("write")
    async def test_c09_write_replaces_the_data(self, source: Source) -> None:
        """With "write", write() replaces everything: read() returns exactly the written data."""
        await source.write(ChangeSet.of(DATA, "conformance"))
        await source.write(ChangeSet.of(CHANGED, "conformance"))
        assert (await source.read()).data == CHANGED

    @absent("write")
    async def test_c10_write_without_capability_raises_not_supported(self, source: Source) -> None:
        """Without "write", write() raises NotSupported and the data is unchanged."""
        before = await source.read()
        with pytest.raises(NotSupported):
            await source.write(ChangeSet.of({"x": 1}, "conformance"))
        assert (await source.read()).data == before.data

    async def test_c11_malformed_content_raises_and_loads_nothing(self) -> None:
        """Undecodable content raises MalformedConfig from read(), rather than giving part of it."""
        source = await self.seeded(DATA)
        await self.corrupt(source)
        with pytest.raises(MalformedConfig):
            await source.read()

    @requires("watch")
    async def test_c12_watcher_reports_a_bad_edit_and_resumes(self) -> None:
        """A malformed change is raised from the watcher as MalformedConfig; the next good change is delivered."""
        source = await self.seeded(DATA)
        watcher = await source.watch()
        self.later(watcher.stop)
        await self.corrupt(source)
        with pytest.raises(MalformedConfig):
            await self.next_change(watcher)
        await self.change(source, CHANGED)
        assert (await self.next_change(watcher)).data == self.expected(CHANGED)


class FileSourceContract(ConfigSourceContract):
    """The ``file`` source: content is a JSON file in a temporary directory, polled quickly."""

    poll_interval: ClassVar[float] = 0.02

    def _directory(self) -> Path:
        directory = getattr(self, "_tmp", None)
        if directory is None:
            directory = self._tmp = Path(tempfile.mkdtemp(prefix="micro-conformance-"))
            self.later(lambda: asyncio.to_thread(shutil.rmtree, directory, True))
        return cast(Path, directory)

    async def make(self, **options: Any) -> Source:
        path = self._directory() / "config.json"
        if not path.exists():
            path.write_text("{}")
        options.setdefault("path", str(path))
        options.setdefault("poll_interval", self.poll_interval)
        return await super().make(**options)

    async def seeded(self, data: dict[str, Any]) -> Source:
        path = self._directory() / f"{self.names('seed')}.json"
        path.write_text(json.dumps(data))
        return await self.another(path=str(path))

    async def change(self, source: Source, data: dict[str, Any]) -> None:
        _replace(Path(cast(Any, source).path), json.dumps(data))

    async def corrupt(self, source: Source) -> None:
        _replace(Path(cast(Any, source).path), '{"database": {"host": ')


def _replace(path: Path, text: str) -> None:
    # Write aside and rename, as editors do, so a poll never sees a half-written file.
    aside = path.with_suffix(".tmp")
    aside.write_text(text)
    aside.replace(path)


class EnvSourceContract(ConfigSourceContract):
    """The ``env`` source: content is a private environment mapping, under a unique variable prefix."""

    async def seeded(self, data: dict[str, Any]) -> Source:
        prefix = self.names.prefix.upper().replace("-", "_")
        environ: dict[str, str] = {}
        _flatten(data, prefix, environ)
        environ["OTHER_APP_SETTING"] = "not ours"
        source = create("config", cast(str, self.name), values={"prefix": (prefix,)}, environ=environ)
        self._environs = getattr(self, "_environs", {})
        self._environs[id(source)] = (environ, prefix)
        return await self.start(cast(Source, source))

    async def change(self, source: Source, data: dict[str, Any]) -> None:
        environ, prefix = self._environs[id(source)]
        for key in [k for k in environ if k.startswith(prefix)]:
            del environ[key]
        _flatten(data, prefix, environ)


def _flatten(data: dict[str, Any], prefix: str, into: dict[str, str]) -> None:
    for key, value in data.items():
        name = f"{prefix}{key.upper()}"
        if isinstance(value, dict):
            _flatten(value, name + "_", into)
        else:
            into[name] = str(value).lower() if isinstance(value, bool) else str(value)


class FlagSourceContract(ConfigSourceContract):
    """The ``flags`` source: content is an argument list; flags never change while a process runs."""

    async def seeded(self, data: dict[str, Any]) -> Source:
        flat: dict[str, str] = {}
        _flatten(data, "", flat)
        argv = ["positional", "-v", *(f"--{k.lower().replace('_', '-')}={v}" for k, v in flat.items()), "--", "--x=1"]
        source = create("config", cast(str, self.name), argv=argv)
        return await self.start(cast(Source, source))

    async def change(self, source: Source, data: dict[str, Any]) -> None:
        pytest.skip("a flag source's arguments cannot change while the process runs")
