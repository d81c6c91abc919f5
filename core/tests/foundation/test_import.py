"""``import micro`` stays cheap and never imports a plugin or a backend."""

from __future__ import annotations

import json
import subprocess
import sys


def test_import_micro_loads_no_backend() -> None:
    code = "import sys, json, micro; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(out.stdout))
    heavy = {"zeroconf", "jwt", "cryptography", "google.protobuf", "redis", "aio_pika", "consul", "sqlite3", "click"}
    assert not heavy & loaded
    assert not {m for m in loaded if m.startswith("micro_")}
