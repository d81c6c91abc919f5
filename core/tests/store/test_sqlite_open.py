"""Opening one fresh SQLite file from several processes at once (store, file sync, local registry)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from micro._sqlite import retry_locked


def test_locked_open_is_retried_until_it_succeeds() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "open"

    assert retry_locked(flaky, 5.0) == "open"
    assert len(calls) == 3


def test_other_errors_are_not_retried() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise sqlite3.OperationalError("no such table: x")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        retry_locked(broken, 5.0)
    assert len(calls) == 1


def test_a_lock_that_outlasts_the_timeout_raises() -> None:
    def locked() -> None:
        raise sqlite3.OperationalError("database is locked")

    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        retry_locked(locked, 0.2)
    assert time.monotonic() - started < 2.0


OPENER = """
import asyncio, sys
from micro.registry.local import LocalRegistry
from micro.registry import LocalRegistryOptions
from micro.store import SQLiteStoreOptions
from micro.store.sqlite import SQLiteStore
from micro.sync import FileSyncOptions
from micro.sync.file import FileSync

async def main(folder):
    async with SQLiteStore(SQLiteStoreOptions(path=folder + "/store.db")), \\
            FileSync(FileSyncOptions(path=folder + "/sync.db")), \\
            LocalRegistry(LocalRegistryOptions(path=folder + "/registry.db")):
        pass

asyncio.run(main(sys.argv[1]))
"""


def test_several_processes_open_fresh_files_at_once(tmp_path: Path) -> None:
    for round_ in range(5):
        folder = tmp_path / str(round_)
        folder.mkdir(mode=0o700)
        procs = [
            subprocess.Popen([sys.executable, "-c", OPENER, str(folder)], stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
