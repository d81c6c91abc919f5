"""docs/testing.md's examples run as written, and the greeter's own tests pass, each in a fresh pytest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "testing.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def run_pytest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # -p no:cacheprovider: nothing written into the tree; a subprocess so the plugin loads by its entry point.
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_example_in_testing_md_runs(tmp_path: Path) -> None:
    examples = FENCE.findall(PAGE.read_text())
    assert len(examples) >= 5, "the page lost its examples"
    tests = 0
    for number, code in enumerate(examples):
        (tmp_path / f"test_example_{number}.py").write_text(code)
        tests += len(re.findall(r"^(?:async )?def test_", code, re.MULTILINE))
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    done = run_pytest(str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{tests} passed" in done.stdout, done.stdout


def test_the_greeters_own_tests_pass() -> None:
    done = run_pytest(str(ROOT / "contrib" / "greeter" / "tests"), "-p", "no:randomly", cwd=ROOT / "contrib")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout, done.stdout
