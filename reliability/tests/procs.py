"""serve.py, the service the reliability tests run in their own processes (micro.testing's helpers)."""

from __future__ import annotations

from pathlib import Path

from micro.testing import ServiceProcess, spawner

__all__ = ["SERVE", "ServiceProcess", "spawner"]

SERVE = Path(__file__).resolve().parent / "serve.py"
