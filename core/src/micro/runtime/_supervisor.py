"""Runs one service process, detached, and records how it ends. Standard library only.

Run as a script, never imported by micro (so it starts without importing micro)::

    python _supervisor.py STATUS_FILE LOG_FILE POLICY -- COMMAND [ARG...]

POLICY is ``on-failure,DELAY,MAX_DELAY,LIMIT`` or ``never``. The process forks: the
parent exits at once (so whoever started it reaps it immediately and the supervisor is
never a zombie of a long-lived caller); the child starts a new session, starts COMMAND
with its output appended to LOG_FILE, writes ``{"supervisor", "pid", "started"}`` to
STATUS_FILE, reports ``ok <supervisor pid> <service pid>`` (or ``error <reason>``) on
the stdout it inherited, and detaches from it. It forwards SIGTERM, SIGINT and SIGHUP to
the service once, and when the service exits adds ``exit_code`` and ``finished`` to
STATUS_FILE (a negative code is the signal that ended it).

Under ``on-failure`` a service that ends with any other code than 0, SIGTERM or
SIGINT, without having been asked to stop, is started again after DELAY
seconds, doubled for each consecutive restart up to MAX_DELAY; after LIMIT
consecutive restarts the supervisor gives up. A run that lasted longer than
MAX_DELAY was healthy and resets the count. While it waits, STATUS_FILE says
``"restarting": true``; it always carries ``restarts``, the number so far. Each
restart and the giving up are logged as one ``micro:`` line in LOG_FILE.
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


_STOP_CODES = frozenset({0, -signal.SIGTERM, -signal.SIGINT})


def _policy(text: str) -> tuple[bool, float, float, int]:
    """``(restart on failure, first delay, longest delay, limit)`` from POLICY; ``ValueError`` if malformed."""
    if text == "never":
        return False, 0.0, 0.0, 0
    kind, delay, longest, limit = text.split(",")
    if kind != "on-failure":
        raise ValueError(kind)
    return True, float(delay), float(longest), int(limit)


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[3] != "--":
        print("error usage: _supervisor.py STATUS_FILE LOG_FILE POLICY -- COMMAND [ARG...]", flush=True)
        return 2
    status_file, log_file, command = argv[0], argv[1], argv[4:]
    try:
        on_failure, first_delay, longest_delay, limit = _policy(argv[2])
    except ValueError:
        print(f"error bad restart policy {argv[2]!r}", flush=True)
        return 2

    if os.fork():
        os._exit(0)
    os.setsid()

    # Handlers go in before the service starts, so a stop that comes early is still forwarded.
    service: subprocess.Popen[bytes] | None = None
    seen: set[int] = set()
    stop_signal: list[int] = []  # the first stop signal received: no restart after it

    def forward(signum: int, _frame: object) -> None:
        if signum in seen:  # the service decides what a second signal means; send each once
            return
        seen.add(signum)
        if not stop_signal:
            stop_signal.append(signum)
        if service is None or service.returncode is not None:
            return  # sent to the next one, if any, when it starts (it will not: we are stopping)
        try:
            service.send_signal(signum)
        except OSError:
            pass

    for stop in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(stop, forward)

    status: dict[str, Any] = {}
    restarts = 0  # in total, reported
    consecutive = 0  # since the last healthy run, limited
    while True:
        try:
            with os.fdopen(_open_log(log_file), "ab") as log:
                service = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        except OSError as exc:
            if restarts == 0:
                _write_json(
                    status_file, {"supervisor": os.getpid(), "pid": None, "started": time.time(), "exit_code": 127}
                )
                print(f"error cannot start {command[0]!r}: {exc.strerror or exc}", flush=True)
                return 127
            print(f"micro: cannot start {command[0]!r} again: {exc.strerror or exc}", flush=True)
            _write_json(status_file, {**status, "exit_code": 127, "finished": time.time(), "restarting": False})
            return 0
        if stop_signal:  # arrived between the last run's end and this start
            service.send_signal(stop_signal[0])

        status = {
            "supervisor": os.getpid(),
            "pid": service.pid,
            "started": time.time(),
            "restarts": restarts,
        }
        _write_json(status_file, status)
        if restarts == 0:
            print(f"ok {os.getpid()} {service.pid}", flush=True)
            _detach_stdio(log_file)

        exit_code = service.wait()
        finished = time.time()
        if finished - status["started"] > longest_delay:
            consecutive = 0  # it ran long enough to count as healthy
        failed = exit_code not in _STOP_CODES and not stop_signal
        if not (failed and on_failure and consecutive < limit):
            if failed and on_failure:
                print(f"micro: exited with code {exit_code}; giving up after {consecutive} restarts", flush=True)
            _write_json(status_file, {**status, "exit_code": exit_code, "finished": finished})
            return 0

        consecutive += 1
        restarts += 1
        delay = min(first_delay * 2 ** (consecutive - 1), longest_delay)
        print(f"micro: exited with code {exit_code}; restart {consecutive} of {limit} in {delay:g}s", flush=True)
        _write_json(status_file, {**status, "last_exit_code": exit_code, "restarting": True, "restarts": restarts})
        # Short sleeps, so a stop during the wait ends it at once rather than after the delay.
        wake = time.monotonic() + delay
        while not stop_signal and time.monotonic() < wake:
            time.sleep(min(0.05, max(0.0, wake - time.monotonic())))
        if stop_signal:
            code = -stop_signal[0]
            _write_json(status_file, {**status, "exit_code": code, "finished": time.time(), "restarts": restarts})
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
