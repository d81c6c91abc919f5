"""micro's typed errors as HTTP responses, as Go Micro's api does: the error's code is the status.

================================================  ======  ===============================
error                                             status  when
================================================  ======  ===============================
:class:`~micro.errors.BadRequest`, ``CodecError``  400     bad JSON, a body the handler's type refuses
:class:`~micro.errors.Unauthorized`                401     the service's auth refused the token
:class:`~micro.errors.Forbidden`                   403     the service's rules refused the account
:class:`~micro.errors.NotFound`                    404     unknown service, unknown endpoint
``Method Not Allowed``                            405     a path that takes POST, called otherwise
:class:`RequestTimeout`                           408     the client was too slow sending its request
:class:`~micro.errors.Conflict`                    409
:class:`~micro.errors.MessageTooLarge`             413     a body over ``max_body_size``
:class:`~micro.errors.InternalError`               500     the handler failed (detail as the service sent it)
:class:`~micro.errors.NotSupported`                501
:class:`~micro.errors.Unavailable`                 503     no node of the service could be reached
:class:`~micro.errors.Timeout`                     504     the call missed its deadline (Gateway Timeout)
================================================  ======  ===============================

Any other code a service sends (an :class:`~micro.errors.RPCError`) is the status when it is an
HTTP error status (400 to 599), else 500. The body is always Go Micro's error JSON,
``{"id", "code", "detail", "status"}``, with ``code`` equal to the HTTP status.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from micro.errors import MicroError, RPCError, Timeout

__all__ = ["GATEWAY", "GatewayTimeout", "MethodNotAllowed", "RequestTimeout", "status_of"]

#: The ``id`` of errors the gateway raises itself.
GATEWAY: Final = "micro.api"

log = logging.getLogger("micro.api")


class GatewayTimeout(Timeout):
    """A call through the gateway missed its deadline: the upstream did not answer in time (504)."""

    code = 504
    status = "Gateway Timeout"


class RequestTimeout(Timeout):
    """The client did not send its request within ``read_timeout`` (408)."""


class MethodNotAllowed(MicroError):
    """An HTTP method the path does not take (405)."""

    code = 405
    status = "Method Not Allowed"


def status_of(error: BaseException) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body for ``error``.

    Timeouts of the call (the client's own deadline, or a service's 408) are 504: the gateway
    waited on its upstream. An exception that is not a :class:`~micro.errors.MicroError` is a
    bug in the gateway: logged here, and answered with a 500 that says nothing of it.
    """
    if isinstance(error, RequestTimeout):
        return 408, error.to_dict()
    if isinstance(error, Timeout) and not isinstance(error, GatewayTimeout):
        error = GatewayTimeout(error.detail or "the call missed its deadline", id=error.id or GATEWAY)
    if isinstance(error, MicroError):
        code = error.code if isinstance(error, RPCError) else type(error).code
        if not 400 <= code <= 599:
            code = 500
        body = error.to_dict()
        if body["code"] != code:
            body["code"], body["status"] = code, "Internal Server Error"
        return code, body
    log.error("micro api: unexpected error", exc_info=error)
    return 500, {
        "id": GATEWAY,
        "code": 500,
        "detail": "internal error in the gateway",
        "status": "Internal Server Error",
    }
