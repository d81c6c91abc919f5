"""Every exception micro raises, in one tree.

Each class carries the HTTP-style ``code`` that goes on the wire (Go Micro's
``errors.Error``), and inherits a builtin wherever callers would catch one::

    MicroError
    ├── ConfigError (ValueError)            start-up: selection and options
    │   ├── PluginNotFound
    │   ├── PluginConflict
    │   ├── InvalidOption
    │   └── MissingExtra                    an optional dependency is not installed
    ├── BadRequest (ValueError)              400
    │   └── CodecError
    ├── Unauthorized                         401
    │   └── InvalidToken
    ├── Forbidden (PermissionError)          403
    ├── NotFound (LookupError)               404
    │   ├── ServiceNotFound
    │   ├── EndpointNotFound
    │   ├── RecordNotFound
    │   └── LockNotFound
    ├── Timeout (TimeoutError)               408
    │   └── LockTimeout
    ├── Conflict                             409
    │   └── LockHeld
    ├── MessageTooLarge                      413
    ├── InternalError                        500
    ├── NotSupported (NotImplementedError)   501
    ├── Unavailable (ConnectionError)        503
    │   ├── BackendUnavailable
    │   ├── NoneAvailable
    │   └── ConnectionClosed
    └── RPCError                             any code: an error that crossed the wire

An error returned by a remote handler is raised by the client as an
:class:`RPCError` that is *also* an instance of the class for its code, so
``except NotFound`` catches a remote 404 and ``except RPCError`` catches every
remote failure. Use :func:`from_wire` to build one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Final

__all__ = [
    "BackendUnavailable",
    "BadRequest",
    "CodecError",
    "ConfigError",
    "Conflict",
    "ConnectionClosed",
    "EndpointNotFound",
    "Forbidden",
    "InternalError",
    "InvalidOption",
    "InvalidToken",
    "LockHeld",
    "LockNotFound",
    "LockTimeout",
    "MessageTooLarge",
    "MicroError",
    "MissingExtra",
    "NoneAvailable",
    "NotFound",
    "NotSupported",
    "PluginConflict",
    "PluginNotFound",
    "RPCError",
    "RecordNotFound",
    "ServiceNotFound",
    "Timeout",
    "Unauthorized",
    "Unavailable",
    "from_wire",
    "is_retryable",
]


class MicroError(Exception):
    """Base of every micro exception.

    :param detail: a human-readable description, shown as ``str(error)``.
    :param id: who raised it (a service or component name), as in Go Micro.
    """

    #: HTTP-style status code sent on the wire.
    code: ClassVar[int] = 500
    #: The reason phrase for ``code``.
    status: ClassVar[str] = "Internal Server Error"

    def __init__(self, detail: str = "", *, id: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.id = id

    def __str__(self) -> str:
        return self.detail or self.status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r}, id={self.id!r}, code={self.code})"

    def to_dict(self) -> dict[str, Any]:
        """The wire form: ``{"id", "code", "detail", "status"}``."""
        return {"id": self.id, "code": self.code, "detail": self.detail, "status": self.status}


class ConfigError(MicroError, ValueError):
    """Selection or options are wrong; raised at start-up, never later."""


class PluginNotFound(ConfigError):
    """No installed plugin provides the selected name for an interface."""


class PluginConflict(ConfigError):
    """Two distributions register the same name for one interface."""


class InvalidOption(ConfigError):
    """An option (or the ``MICRO_*`` variable it came from) has a bad value.

    :param option: the option's field name, e.g. ``"ttl"``.
    :param variable: the environment variable it was read from, if any.
    """

    def __init__(self, detail: str, *, option: str, variable: str | None = None, id: str = "") -> None:
        self.option = option
        self.variable = variable
        where = variable if variable else f"option {option!r}"
        super().__init__(f"{where}: {detail}", id=id)


class MissingExtra(ConfigError):
    """The selected implementation needs an optional dependency that is not installed.

    :param what: what needs it, e.g. ``"registry 'mdns'"``.
    :param extra: the extra of ``asyncmicro-core`` that installs it, e.g. ``"mdns"``.
    :param module: the module that is missing, e.g. ``"zeroconf"``.
    """

    def __init__(self, what: str, *, extra: str, module: str, id: str = "") -> None:
        self.extra = extra
        self.module = module
        super().__init__(
            f"{what} needs {module}, which is not installed: pip install 'asyncmicro-core[{extra}]'", id=id
        )


class BadRequest(MicroError, ValueError):
    code = 400
    status = "Bad Request"


class CodecError(BadRequest):
    """Bytes that the named codec cannot decode, or a value it cannot encode."""


class Unauthorized(MicroError):
    code = 401
    status = "Unauthorized"


class InvalidToken(Unauthorized):
    """A token that is expired, forged, revoked or not a token at all."""


class Forbidden(MicroError, PermissionError):
    code = 403
    status = "Forbidden"


class NotFound(MicroError, LookupError):
    code = 404
    status = "Not Found"


class ServiceNotFound(NotFound):
    pass


class EndpointNotFound(NotFound):
    pass


class RecordNotFound(NotFound):
    pass


class LockNotFound(NotFound):
    """Unlock of a lock that nobody holds."""


class Timeout(MicroError, TimeoutError):
    code = 408
    status = "Request Timeout"


class LockTimeout(Timeout):
    """A lock could not be acquired within its ``wait``."""


class Conflict(MicroError):
    code = 409
    status = "Conflict"


class LockHeld(Conflict):
    """The lock belongs to someone else (unlock by a non-owner)."""


class MessageTooLarge(MicroError):
    code = 413
    status = "Request Entity Too Large"


class InternalError(MicroError):
    code = 500
    status = "Internal Server Error"


class NotSupported(MicroError, NotImplementedError):
    """An optional operation the implementation does not declare."""

    code = 501
    status = "Not Implemented"


class Unavailable(MicroError, ConnectionError):
    code = 503
    status = "Service Unavailable"


class BackendUnavailable(Unavailable):
    """A backend server (Redis, RabbitMQ, Consul...) cannot be reached."""


class NoneAvailable(Unavailable):
    """A service is known but none of its nodes can be used."""


class ConnectionClosed(Unavailable):
    """The peer closed the connection, or it was closed locally."""


class RPCError(MicroError):
    """An error that crossed the wire, with the code the remote side sent.

    Unlike the other classes, ``code`` and ``status`` are per instance.
    """

    code: int  # type: ignore[misc]
    status: str  # type: ignore[misc]

    def __init__(self, detail: str = "", *, id: str = "", code: int = 500, status: str = "") -> None:
        super().__init__(detail, id=id)
        self.code = code
        self.status = status or _REASONS.get(code, "")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


_REASONS: Final[dict[int, str]] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_BY_CODE: Final[dict[int, type[MicroError]]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    408: Timeout,
    409: Conflict,
    413: MessageTooLarge,
    500: InternalError,
    501: NotSupported,
    503: Unavailable,
}

_REMOTE_CLASSES: dict[int, type[RPCError]] = {}

#: Finer classes a remote error names by its ``status`` (a network node with no route to a service says so).
_BY_STATUS: Final[dict[tuple[int, str], type[MicroError]]] = {(404, "Service Not Found"): ServiceNotFound}
_REMOTE_BY_STATUS: dict[tuple[int, str], type[RPCError]] = {}


def _remote_class(code: int) -> type[RPCError]:
    cls = _REMOTE_CLASSES.get(code)
    if cls is None:
        base = _BY_CODE.get(code)
        if base is None:
            return RPCError  # not remembered: codes come from the wire, and a server may send any number of them
        cls = type(f"Remote{base.__name__}", (RPCError, base), {"__module__": __name__})
        _REMOTE_CLASSES[code] = cls
    return cls


def from_wire(data: Mapping[str, Any] | str | bytes) -> RPCError:
    """Build the error a remote side sent, as ``{"id", "code", "detail", "status"}``.

    The result is an :class:`RPCError` and also an instance of the class for its
    code (``NotFound`` for 404 and so on). Text that is not such an object
    becomes a 500 whose detail is the text itself, as Go Micro's ``errors.Parse``.
    """
    if isinstance(data, (str, bytes)):
        try:
            parsed = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder allows
            parsed = None
        if not isinstance(parsed, dict):
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            return _remote_class(500)(text, code=500)
        data = parsed
    try:
        code = int(data.get("code") or 500)
    except (TypeError, ValueError, OverflowError):  # OverflowError: 1e400 decodes to an infinite float
        code = 500
    status = str(data.get("status") or "")
    cls = _remote_class(code)
    finer = _BY_STATUS.get((code, status))
    if finer is not None:
        cls = _REMOTE_BY_STATUS.get((code, status)) or _REMOTE_BY_STATUS.setdefault(
            (code, status), type(f"Remote{finer.__name__}", (cls, finer), {"__module__": __name__})
        )
    return cls(
        str(data.get("detail") or ""),
        id=str(data.get("id") or ""),
        code=code,
        status=status,
    )


def is_retryable(error: BaseException) -> bool:
    """Whether a call that failed with ``error`` may be tried again: timeouts and unavailability."""
    if isinstance(error, MicroError):
        return error.code in (408, 502, 503, 504)
    return isinstance(error, (TimeoutError, ConnectionError))
