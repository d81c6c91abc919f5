"""The README's demo command runs the whole service path end to end and exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[3] / "contrib" / "greeter" / "demo.py"


def test_greeter_demo_runs_end_to_end() -> None:
    out = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "-> 'Hello Alice'" in out.stdout
    assert "-> received [1, 2, 3]" in out.stdout
    assert "BadRequest 400: name must not be empty" in out.stdout
    assert "subscriber received it: ['Bob']" in out.stdout
    assert "exited with status 0" in out.stdout
