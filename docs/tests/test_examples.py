"""Every example in the documentation runs as written (see ``examples.py`` for the markers)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from examples import PAGES, ROOT, RUNNER, Example, examples

ALL = examples()
RUN = [e for e in ALL if e.not_run is None and not e.serves]  # a server runs in its client's test


def test_the_pages_have_examples_and_most_run() -> None:
    # A marker that silenced every example would leave this suite passing while proving nothing.
    assert len(ALL) >= 30, [e.id for e in ALL]
    assert len(RUN) >= len(ALL) // 2, [e.id for e in ALL if e.not_run]


def test_every_not_run_marker_gives_a_reason() -> None:
    assert all(len(e.not_run.strip()) >= 10 for e in ALL if e.not_run is not None)


def test_every_server_has_a_client() -> None:
    for example in ALL:
        if example.serves:
            assert any(e.server is example for e in RUN), f"{example.id} serves no example"


def test_no_marker_is_left_without_its_block() -> None:
    # A marker separated from its fence (a blank line, a typo) silently stops applying.
    for page in PAGES:
        for match in re.finditer(r"^<!-- (?:not )?run:.*-->\n(.*)\n", page.read_text(), re.MULTILINE):
            assert match[1] == "```python", f"{page.name}: the marker must sit right above its ```python fence"


def _environ(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MICRO_")}
    env.update({"HOME": str(tmp_path), "PYTHONPATH": str(tmp_path)})
    for name in ("XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        (tmp_path / name.lower()).mkdir(mode=0o700, exist_ok=True)
        env[name] = str(tmp_path / name.lower())
    return env


def _run(example: Example, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = tmp_path / example.filename
    script.write_text(example.code)
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.mark.parametrize("example", RUN, ids=lambda e: e.id)
def test_example_runs(example: Example, tmp_path: Path) -> None:
    (tmp_path / "contrib").symlink_to(ROOT / "contrib")  # examples name contrib/greeter relative to a clone
    env = _environ(tmp_path)
    if example.server is None:
        done = _run(example, tmp_path, env)
    else:
        done = _run_against_server(example, example.server, tmp_path, env)
    assert done.returncode == 0, f"{example.id} failed:\n{done.stdout}\n{done.stderr}"
    if example.prints is not None:
        assert done.stdout == example.prints, f"{example.id} printed:\n{done.stdout}"


def _run_against_server(
    example: Example, server: Example, tmp_path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / server.filename
    script.write_text(server.code)
    log = tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(script)], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:  # the server registers asynchronously: retry the client until it is found
            done = _run(example, tmp_path, env)
            if done.returncode == 0 or time.monotonic() > deadline or process.poll() is not None:
                break
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    assert code == 0, f"{server.id} (the server) exited {code}:\n{log.read_text()}"
    return done
