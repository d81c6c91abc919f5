"""FileSync beyond the shared contract: several OS processes, files and selection."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from micro import create
from micro.errors import BackendUnavailable, InvalidOption
from micro.sync import FileSyncOptions, SyncOptions
from micro.sync.file import FileSync
from micro.sync.memory import MemorySync

CONTENDER = """
    import asyncio, os, sys, time
    from micro.sync import FileSyncOptions
    from micro.sync.file import FileSync

    async def main(db, marks, rounds):
        async with FileSync(FileSyncOptions(path=db, poll_interval=0.01)) as sync:
            print("ready", flush=True)
            sys.stdin.readline()  # start together with the other contender
            for _ in range(rounds):
                await sync.lock("critical", ttl=10, wait=20)
                with open(marks, "a") as f:
                    f.write(f"enter {os.getpid()} {time.time()!r}\\n")
                    f.flush()
                    time.sleep(0.005)  # hold it long enough that an overlap would show
                    f.write(f"exit {os.getpid()} {time.time()!r}\\n")
                await sync.unlock("critical")

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_two_processes_contending_for_one_lock_never_overlap(tmp_path: Path) -> None:
    db, marks, rounds = str(tmp_path / "sync.db"), tmp_path / "marks.txt", 15
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            textwrap.dedent(CONTENDER),
            db,
            str(marks),
            str(rounds),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        for proc in procs:
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    lines = [line.split() for line in marks.read_text().splitlines()]
    assert len(lines) == 2 * 2 * rounds
    assert {pid for _, pid, _ in lines} == {str(p.pid) for p in procs}
    last_exit = 0.0
    for enter, exit_ in zip(lines[::2], lines[1::2], strict=True):
        assert enter[0] == "enter"
        assert exit_[0] == "exit"
        assert enter[1] == exit_[1], "another process entered before this one left"
        assert float(enter[2]) >= last_exit
        last_exit = float(exit_[2])


async def test_default_file_is_in_a_private_runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "run").mkdir(mode=0o700)  # XDG_RUNTIME_DIR must exist to be used, as the spec says
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    async with FileSync() as sync:
        assert sync.path == str(tmp_path / "run" / "micro" / "sync.db")
        assert await sync.try_lock("x")
    mode = stat.S_IMODE(os.stat(tmp_path / "run" / "micro").st_mode)
    assert mode == 0o700


async def test_default_dir_that_is_not_a_directory_is_backend_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "micro").write_text("a file where the directory should be")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(BackendUnavailable, match=r"micro is not a directory .*remove it.*MICRO_SYNC_PATH"):
        await FileSync().start()


async def test_selected_with_micro_variables(tmp_path: Path) -> None:
    environ = {
        "MICRO_SYNC": "file",
        "MICRO_SYNC_PATH": str(tmp_path / "locks.db"),
        "MICRO_SYNC_PREFIX": "app/",
        "MICRO_SYNC_POLL_INTERVAL": "50ms",
        "MICRO_SYNC_OWNER": "node-1",
    }
    sync = create("sync", environ=environ)
    assert isinstance(sync, FileSync)
    assert sync.options == FileSyncOptions(
        path=str(tmp_path / "locks.db"), prefix="app/", poll_interval=0.05, owner="node-1"
    )
    async with sync:
        assert sync.owner == "node-1"
        await sync.lock("x")
    assert (tmp_path / "locks.db").is_file()


def test_memory_is_the_default_sync() -> None:
    sync = create("sync", environ={})
    assert isinstance(sync, MemorySync)
    assert sync.options == SyncOptions()


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"poll_interval": 0}, "poll_interval"),
        ({"busy_timeout": -1}, "busy_timeout"),
        ({"owner": ""}, "owner"),
        ({"path": " "}, "path"),
        ({"address": ["not", "a", "tuple"]}, "address"),
    ],
)
def test_bad_options(options: dict[str, object], option: str) -> None:
    with pytest.raises(InvalidOption) as info:
        FileSyncOptions(**options)  # type: ignore[arg-type]
    assert info.value.option == option
