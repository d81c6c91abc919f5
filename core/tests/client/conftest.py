"""Fixtures for the client tests: the in-process stack shared with the server tests."""

from __future__ import annotations

import sys
from pathlib import Path

# The stack lives beside the server tests; test directories are not packages, so make it importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))

from rpcstack import stack

__all__ = ["stack"]
