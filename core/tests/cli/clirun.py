"""Run the ``micro`` command as a user would: a separate process, optional environment and stdin."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping

__all__ = ["micro"]


async def micro(
    *args: str, env: Mapping[str, str] | None = None, stdin: str | None = None, timeout: float = 60.0
) -> tuple[int, str, str]:
    """Run ``python -m micro ARGS`` (``env`` added to this process's environment) and return (status, out, err)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "micro",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env} if env is not None else None,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin is not None else None), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
