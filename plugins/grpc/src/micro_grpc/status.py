"""The one table between micro's error codes and gRPC status codes, both ways.

===========  ==========================  ==============================================
micro code   gRPC status sent            gRPC statuses received as this micro code
===========  ==========================  ==============================================
400          ``INVALID_ARGUMENT``        ``INVALID_ARGUMENT``, ``FAILED_PRECONDITION``, ``OUT_OF_RANGE``
401          ``UNAUTHENTICATED``         ``UNAUTHENTICATED``
403          ``PERMISSION_DENIED``       ``PERMISSION_DENIED``
404          ``NOT_FOUND``               ``NOT_FOUND``
408          ``DEADLINE_EXCEEDED``       ``DEADLINE_EXCEEDED``, ``CANCELLED``
409          ``ALREADY_EXISTS``          ``ALREADY_EXISTS``, ``ABORTED``
413          ``RESOURCE_EXHAUSTED``      ``RESOURCE_EXHAUSTED``
500          ``INTERNAL``                ``INTERNAL``, ``UNKNOWN``, ``DATA_LOSS``
501          ``UNIMPLEMENTED``           ``UNIMPLEMENTED``
503          ``UNAVAILABLE``             ``UNAVAILABLE``
other        ``UNKNOWN``                 (none)
===========  ==========================  ==============================================

A micro server also sends the exact code and the error's ``id`` as trailing
metadata (``micro-error-code``, ``micro-error-id``), so a micro client gets back
the very code it would over mucp (say 429 or 502) while any other gRPC client
sees the status above; the status details carry the error's ``detail``.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from micro.errors import MicroError, RPCError, from_wire

__all__ = ["ERROR_CODE", "ERROR_ID", "from_status", "to_status"]

#: Trailing metadata keys with the exact micro error code and id.
ERROR_CODE = "micro-error-code"
ERROR_ID = "micro-error-id"

_SENT: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
}

_RECEIVED: dict[grpc.StatusCode, int] = {
    **{status: code for code, status in _SENT.items()},
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.CANCELLED: 408,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.DATA_LOSS: 500,
}


def to_status(error: MicroError) -> grpc.StatusCode:
    """The gRPC status a micro error goes out as (``UNKNOWN`` for a code the table lacks)."""
    return _SENT.get(error.code, grpc.StatusCode.UNKNOWN)


def from_status(
    status: grpc.StatusCode, detail: str | None, trailers: Mapping[str, str] | None = None, *, service: str = ""
) -> RPCError:
    """The typed micro error for a gRPC status: an :class:`~micro.errors.RPCError` that is also the class
    of its code (``NotFound`` for ``NOT_FOUND``...). The exact code in ``micro-error-code`` wins when a
    micro server sent one; ``service`` is the error's id when the server named none."""
    code = _RECEIVED.get(status, 500)
    error_id = service
    if trailers:
        exact = trailers.get(ERROR_CODE)
        if exact is not None and exact.isdigit() and 100 <= int(exact) <= 599:
            code = int(exact)
        error_id = trailers.get(ERROR_ID) or service
    return from_wire({"id": error_id, "code": code, "detail": detail or status.name, "status": ""})
