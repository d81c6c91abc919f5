"""Fixtures for the server tests: see :mod:`rpcstack`."""

from __future__ import annotations

import sys
from pathlib import Path

# Tests are imported with --import-mode=importlib, so the helper module beside them is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rpcstack import stack

__all__ = ["stack"]
