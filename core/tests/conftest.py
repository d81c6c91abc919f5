"""Keep the test run away from the developer's real micro state.

The embedded defaults keep per-user files (the local registry, file sync and
runtime state under ``$XDG_RUNTIME_DIR``/``$XDG_STATE_HOME``, the SQLite store under
``$XDG_DATA_HOME``, JWT keys under ``$XDG_CONFIG_HOME``). Pointing all of them at one
temporary directory for the whole session, before any test or subprocess starts,
isolates the run while still letting two processes of one test find each other
"with zero configuration". ``MICRO_*`` variables from the caller's shell are dropped
so they cannot change what the tests select.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_ROOT = tempfile.mkdtemp(prefix="micro-tests-")
for _name in ("XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
    _path = os.path.join(_ROOT, _name.lower())
    os.makedirs(_path, mode=0o700, exist_ok=True)
    os.environ[_name] = _path
for _key in [k for k in os.environ if k.startswith("MICRO_")]:
    del os.environ[_key]


def pytest_unconfigure() -> None:
    shutil.rmtree(_ROOT, ignore_errors=True)
