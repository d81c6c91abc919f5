"""FileSource: formats, errors naming file and line, watching by polling."""

from __future__ import annotations

import asyncio
import os

import micro
import pytest
from micro.config import FileSourceOptions, MalformedConfig
from micro.config.file import FileSource
from micro.errors import ConfigError

FORMATS = {
    "json": ('{"db": {"host": "h", "port": 1}, "tags": ["a"]}', '{\n  "db": {\n    "host": "h",\n  }\n}', 4),
    "yaml": ("db:\n  host: h\n  port: 1\ntags: [a]\n", "db:\n  host: h\n  port: [1, 2\nx: 1\n", 4),
    "toml": ('tags = ["a"]\n[db]\nhost = "h"\nport = 1\n', '[db]\nhost = "h"\nport = = 1\n', 3),
}


def source_for(path, **options) -> FileSource:
    return FileSource(FileSourceOptions(path=str(path), **options))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
async def test_reads_each_format(tmp_path, fmt):
    good, _, _ = FORMATS[fmt]
    path = tmp_path / f"app.{fmt}"
    path.write_text(good)
    changeset = await source_for(path).read()
    assert changeset.data == {"db": {"host": "h", "port": 1}, "tags": ["a"]}
    assert changeset.source == f"file:{path}"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
async def test_malformed_file_names_file_and_line(tmp_path, fmt):
    _, bad, line = FORMATS[fmt]
    path = tmp_path / f"broken.{fmt}"
    path.write_text(bad)
    with pytest.raises(MalformedConfig) as info:
        await source_for(path).read()
    assert info.value.line == line
    assert str(path) in str(info.value)
    assert f"line {line}" in str(info.value)
    assert isinstance(info.value, ConfigError)


async def test_yml_extension_explicit_format_and_yaml_keys(tmp_path):
    path = tmp_path / "conf.yml"
    path.write_text("1: one\n2.5: [x]\n")
    assert (await source_for(path).read()).data == {"1": "one", "2.5": ["x"]}
    other = tmp_path / "conf.txt"
    other.write_text('{"a": 1}')
    assert (await source_for(other, format="json").read()).data == {"a": 1}


async def test_top_level_must_be_a_mapping_and_empty_is_empty(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(MalformedConfig, match="expected a mapping at the top level, got list"):
        await source_for(path).read()
    path.write_text("")
    assert (await source_for(path).read()).data == {}


async def test_not_utf8_is_malformed_with_line(tmp_path):
    path = tmp_path / "bin.json"
    path.write_bytes(b'{\n"a": "\xff"}')
    with pytest.raises(MalformedConfig) as info:
        await source_for(path).read()
    assert info.value.line == 2


async def test_missing_file_is_an_error_unless_optional(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="no such file"):
        await source_for(path).read()
    assert (await source_for(path, required=False).read()).data == {}


async def test_unreadable_path_is_a_config_error(tmp_path):
    directory = tmp_path / "dir.json"
    directory.mkdir()
    with pytest.raises(ConfigError, match="cannot read"):
        await source_for(directory).read()


async def test_created_through_the_plugin_manager(tmp_path):
    path = tmp_path / "app.json"
    path.write_text('{"a": 1}')
    source = micro.create("config", "file", environ={}, path=str(path))
    assert isinstance(source, FileSource)
    assert (await source.read()).data == {"a": 1}


async def test_watch_sees_edits_reports_bad_ones_once_and_resumes(tmp_path):
    path = tmp_path / "app.json"
    path.write_text('{"v": 1}')
    source = source_for(path, poll_interval=0.02)
    async with await source.watch() as watcher:
        # Same size as before: only the content hash tells the edit apart.
        path.write_text('{"v": 2}')
        assert (await asyncio.wait_for(anext(watcher), 5)).data == {"v": 2}
        path.write_text('{"v": ')
        with pytest.raises(MalformedConfig):
            await asyncio.wait_for(anext(watcher), 5)
        # Renamed into place, as editors do.
        replacement = tmp_path / "app.json.tmp"
        replacement.write_text('{"v": 3, "w": true}')
        os.replace(replacement, path)
        assert (await asyncio.wait_for(anext(watcher), 5)).data == {"v": 3, "w": True}


async def test_watch_ignores_rewrites_with_equal_data(tmp_path):
    path = tmp_path / "app.yaml"
    path.write_text("v: 1\n")
    source = source_for(path, poll_interval=0.02)
    watcher = await source.watch()
    path.write_text("v: 1  # same value, new bytes\n")
    path.write_text("v: 1\n")
    path.write_text("v: 5\n")
    assert (await asyncio.wait_for(anext(watcher), 5)).data == {"v": 5}
    await source.close()
    with pytest.raises(StopAsyncIteration):
        await anext(watcher)


async def test_watch_missing_file_appearing_and_required_file_removed(tmp_path):
    path = tmp_path / "later.json"
    optional = source_for(path, required=False, poll_interval=0.02)
    async with await optional.watch() as watcher:
        path.write_text('{"ready": true}')
        assert (await asyncio.wait_for(anext(watcher), 5)).data == {"ready": True}
        path.unlink()
        assert (await asyncio.wait_for(anext(watcher), 5)).data == {}
    path.write_text('{"a": 1}')
    required = source_for(path, poll_interval=0.02)
    async with await required.watch() as watcher:
        path.unlink()
        with pytest.raises(ConfigError, match="no such file"):
            await asyncio.wait_for(anext(watcher), 5)


async def test_stop_wakes_a_waiting_watcher(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("{}")
    source = source_for(path, poll_interval=10)
    watcher = await source.watch()
    waiting = asyncio.create_task(anext(watcher))
    await asyncio.sleep(0.01)
    await watcher.stop()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 2)


async def test_a_half_written_file_is_not_taken(tmp_path):
    # Polls are driven by hand: each _poll() is one check of the file.
    path = tmp_path / "app.yaml"
    path.write_text("v: 1\n")
    source = source_for(path, poll_interval=10)
    watcher = await source.watch()
    path.write_text("")  # truncated by a writer...
    assert await watcher._poll() is None  # type: ignore[attr-defined]
    path.write_text("v: 2\n")  # ...and written
    assert await watcher._poll() is None  # type: ignore[attr-defined]
    changeset = await watcher._poll()  # type: ignore[attr-defined]
    assert changeset is not None
    assert changeset.data == {"v": 2}
    assert await watcher._poll() is None  # type: ignore[attr-defined]
    await watcher.stop()
