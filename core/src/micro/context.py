"""The call context: the metadata and deadline of the call being handled, in context variables.

This is Go Micro's ``ctx`` for Python. The server sets both before it runs a
handler (metadata from the request headers, the deadline from the ``Timeout``
header), and the client reads both for every outgoing call. So metadata such as
``Authorization`` or trace ids, and the caller's remaining time, flow through a
handler into the calls it makes without being passed around::

    from micro import context

    class Say:
        async def hello(self, req: Request) -> Response:
            user = context.get("X-User")             # an inbound header
            context.set_header("X-Served-By", "a")   # a response header
            async with asyncio.timeout(1):           # plain asyncio timeouts still apply
                ...
            # downstream calls get the inbound metadata and at most context.remaining() seconds

    with context.with_metadata({"X-User": "bob"}), context.with_timeout(2.0):
        await client.call("greeter", "Say.hello", {"name": "bob"})

Values live in :mod:`contextvars`, so each task sees its own (a task inherits
the values at the moment it is created) and the managers below restore the
previous values on exit, also when an exception leaves the block.
Deadlines are ``time.monotonic()`` instants.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from .metadata import Metadata

__all__ = [
    "current_metadata",
    "deadline",
    "get",
    "metadata",
    "remaining",
    "response_metadata",
    "serving",
    "set_header",
    "with_deadline",
    "with_metadata",
    "with_timeout",
]

_metadata: ContextVar[Metadata | None] = ContextVar("micro.metadata", default=None)
_deadline: ContextVar[float | None] = ContextVar("micro.deadline", default=None)
_response: ContextVar[Metadata | None] = ContextVar("micro.response_metadata", default=None)

_EMPTY = Metadata()


def metadata() -> Metadata:
    """A copy of the current metadata: the inbound headers inside a handler, plus :func:`with_metadata` layers.

    Empty outside any call. Changing the copy changes nothing; use
    :func:`with_metadata` to add outgoing metadata.
    """
    current = _metadata.get()
    return current.copy() if current is not None else Metadata()


def current_metadata() -> Metadata:
    """The current metadata itself, not a copy: for the client's hot path. Do not mutate it."""
    current = _metadata.get()
    return current if current is not None else _EMPTY


def get(key: str, default: str | None = None) -> str | None:
    """One metadata value, looked up case-insensitively, or ``default``."""
    current = _metadata.get()
    if current is None:
        return default
    return current.get(key, default)


def deadline() -> float | None:
    """The ``time.monotonic()`` instant the current call must finish by, or ``None`` for no deadline."""
    return _deadline.get()


def remaining() -> float | None:
    """Seconds left until :func:`deadline` (negative once it has passed), or ``None`` for no deadline."""
    when = _deadline.get()
    return None if when is None else when - time.monotonic()


@contextmanager
def with_metadata(values: Mapping[str, str] | None = None, /, **kwargs: str) -> Iterator[Metadata]:
    """Add ``values`` (and ``kwargs``) over the current metadata for the block.

    Outgoing calls, streams and publishes made inside the block carry the merged
    metadata as headers. Yields the merged :class:`~micro.metadata.Metadata`.
    """
    merged = current_metadata().copy()
    if values:
        merged.update(values)
    if kwargs:
        merged.update(kwargs)
    token = _metadata.set(merged)
    try:
        yield merged
    finally:
        _metadata.reset(token)


@contextmanager
def with_deadline(when: float) -> Iterator[float]:
    """Make ``when`` (a ``time.monotonic()`` instant) the deadline for the block, unless an earlier one is set.

    Deadlines only ever shrink: an inner block cannot extend its caller's time.
    Yields the effective deadline.
    """
    current = _deadline.get()
    effective = when if current is None or when < current else current
    token = _deadline.set(effective)
    try:
        yield effective
    finally:
        _deadline.reset(token)


@contextmanager
def with_timeout(seconds: float) -> Iterator[float]:
    """:func:`with_deadline` at ``seconds`` from now. Yields the effective deadline."""
    if seconds != seconds or seconds < 0:  # NaN or negative
        raise ValueError(f"timeout must be a non-negative number of seconds, got {seconds!r}")
    with with_deadline(time.monotonic() + seconds) as effective:
        yield effective


def set_header(key: str, value: str) -> None:
    """Set a response header of the call being handled; the caller gets it in its response metadata.

    Raises :class:`RuntimeError` outside a handler (there is no response to
    add it to).
    """
    response = _response.get()
    if response is None:
        raise RuntimeError("context.set_header() called outside a request handler")
    response[key] = value


def response_metadata() -> Metadata | None:
    """The response headers collected so far by the running handler, or ``None`` outside one."""
    return _response.get()


class serving:  # lower case: used like the function it replaced, ``with serving(...) as response:``
    """What the server does around a handler: install its inbound metadata, deadline and response headers.

    Unlike :func:`with_metadata` and :func:`with_deadline` this *replaces* the
    current values: a handler starts from its request, not from whatever the
    serving task inherited. Entering gives the (initially empty) response metadata.

    A class rather than a ``@contextmanager`` generator: it runs for every call served.
    """

    __slots__ = ("_inbound", "_tokens", "_when")

    def __init__(self, inbound: Metadata, when: float | None) -> None:
        self._inbound = inbound
        self._when = when

    def __enter__(self) -> Metadata:
        response = Metadata()
        self._tokens = (_metadata.set(self._inbound), _deadline.set(self._when), _response.set(response))
        return response

    def __exit__(self, *exc_info: object) -> None:
        metadata, deadline, response = self._tokens
        _response.reset(response)
        _deadline.reset(deadline)
        _metadata.reset(metadata)
