"""Runs one service process, detached, and records how it ends. Standard library only.

Run as a script, never imported by micro (so it starts without importing micro)::

    python _supervisor.py STATUS_FILE LOG_FILE -- COMMAND [ARG...]

The process forks: the parent exits at once (so whoever started it reaps it
immediately and the supervisor is never a zombie of a long-lived caller); the
child starts a new session, starts COMMAND with its output appended to
LOG_FILE, writes ``{"supervisor", "pid", "started"}`` to STATUS_FILE, reports
``ok <supervisor pid> <service pid>`` (or ``error <reason>``) on the stdout it
inherited, and detaches from it. It forwards SIGTERM, SIGINT and SIGHUP to the
service once, and when the service exits adds ``exit_code`` and ``finished``
to STATUS_FILE (a negative code is the signal that ended it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

# Every file is created 0600 and never through a symlink: the state directory is private to its user.
_PRIVATE = os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _write_json(path: str, data: dict[str, Any]) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)  # left by a crash of an earlier process with this pid
    fd = os.open(temporary, os.O_WRONLY | os.O_EXCL | _PRIVATE, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(data, file)
    os.replace(temporary, path)


def _open_log(log_file: str) -> int:
    return os.open(log_file, os.O_WRONLY | os.O_APPEND | _PRIVATE, 0o600)


def _detach_stdio(log_file: str) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    log = _open_log(log_file)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("error usage: _supervisor.py STATUS_FILE LOG_FILE -- COMMAND [ARG...]", flush=True)
        return 2
    status_file, log_file, command = argv[0], argv[1], argv[3:]

    if os.fork():
        os._exit(0)
    os.setsid()

    # Handlers go in before the service starts, so a stop that comes early is still forwarded.
    service: subprocess.Popen[bytes] | None = None
    seen: set[int] = set()
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if signum in seen:  # the service decides what a second signal means; send each once
            return
        seen.add(signum)
        if service is None:
            pending.append(signum)
            return
        try:
            service.send_signal(signum)
        except OSError:
            pass

    for stop in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(stop, forward)

    try:
        with os.fdopen(_open_log(log_file), "ab") as log:
            service = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    except OSError as exc:
        _write_json(status_file, {"supervisor": os.getpid(), "pid": None, "started": time.time(), "exit_code": 127})
        print(f"error cannot start {command[0]!r}: {exc.strerror or exc}", flush=True)
        return 127
    for signum in pending:
        service.send_signal(signum)

    status: dict[str, Any] = {"supervisor": os.getpid(), "pid": service.pid, "started": time.time()}
    _write_json(status_file, status)

    print(f"ok {os.getpid()} {service.pid}", flush=True)
    _detach_stdio(log_file)

    exit_code = service.wait()
    _write_json(status_file, {**status, "exit_code": exit_code, "finished": time.time()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
