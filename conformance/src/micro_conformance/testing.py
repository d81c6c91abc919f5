"""Helpers for plugin test suites, contract or not: ``from micro_conformance.testing import eventually``.

Everything here works in any pytest-asyncio test, inside a contract class or
outside one; it depends on pytest but on nothing else from this distribution.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any, Final

import pytest

__all__ = ["eventually"]

#: What a check raises while its condition does not hold yet (``pytest.raises`` raises ``Failed``).
_NOT_YET: Final = (AssertionError, pytest.fail.Exception)


async def eventually(
    check: Callable[[], Any],
    *,
    timeout: float = 5.0,
    interval: float = 0.005,
    what: str = "",
) -> Any:
    """Call ``check`` until it holds, and return its result; fail after ``timeout`` seconds.

    ``check`` holds when it returns anything but ``False`` without raising
    :class:`AssertionError` or failing a ``pytest.raises`` (so ``lambda: len(got) == 3``
    and a function full of ``assert`` statements both work). Other exceptions
    propagate at once.
    Polls back off from ``interval`` to 0.1 s. At the deadline, raises
    :class:`AssertionError` with ``what`` and the last assertion's message.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = interval
    while True:
        last: BaseException | None = None
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
        except _NOT_YET as exc:
            last = exc
        else:
            if result is not False:
                return result
        if loop.time() >= deadline:
            detail = f": {last}" if last is not None and str(last) else ""
            raise AssertionError(f"{what or 'condition'} did not hold within {timeout:g}s{detail}") from last
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
