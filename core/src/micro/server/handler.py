"""Handler introspection: classes of async methods become ``Class.method`` endpoints.

Everything here runs once, when a handler is registered, so that serving a call
never looks at type hints again. A method is an endpoint when it is public (no
leading underscore) and asynchronous: a coroutine function or an async
generator function. Its shape decides the kind of call:

========================================================  ================
signature                                                 kind
========================================================  ================
``async def m(self, req: Req) -> Resp``                   unary
``async def m(self, req: Req) -> AsyncIterator[Resp]``    server stream
``async def m(self, reqs: AsyncIterator[Req]) -> Resp``   client stream
``async def m(self, reqs: AsyncIterator[Req]) -> AsyncIterator[Resp]``  bidirectional
========================================================  ================

``Req``/``Resp`` may be dataclasses, pydantic models, ``dict`` or any type the
codec decodes into; a missing annotation means "plain values". ``self`` may be
followed by no parameter at all (the request body is then ignored). Call
metadata and the deadline are read through :mod:`micro.context`, not passed as
parameters.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..registry.base import Endpoint, Value

__all__ = ["Kind", "Method", "Subscription", "describe", "methods_of", "subscriptions_of"]

_STREAM_ORIGINS: frozenset[Any] = frozenset(
    {
        collections.abc.AsyncIterator,
        collections.abc.AsyncIterable,
        collections.abc.AsyncGenerator,
    }
)


class Kind(enum.Enum):
    """How requests and responses flow in one call."""

    UNARY = "unary"
    SERVER_STREAM = "server_stream"
    CLIENT_STREAM = "client_stream"
    BIDI_STREAM = "bidi_stream"

    @property
    def streaming(self) -> bool:
        return self is not Kind.UNARY

    @property
    def client_streams(self) -> bool:
        """Whether the handler takes an async iterator of requests."""
        return self in (Kind.CLIENT_STREAM, Kind.BIDI_STREAM)

    @property
    def server_streams(self) -> bool:
        """Whether the handler produces an async iterator of responses."""
        return self in (Kind.SERVER_STREAM, Kind.BIDI_STREAM)


@dataclass(frozen=True, slots=True)
class Method:
    """One endpoint of a handler, resolved once at registration."""

    #: ``"Class.method"``: what callers put in ``Micro-Endpoint``.
    name: str
    #: The bound method.
    function: Callable[..., Any]
    kind: Kind
    #: The type the request (or each streamed request) is decoded into; ``None`` for plain values.
    request_type: Any
    #: The declared response (or streamed item) type; ``None`` when not annotated.
    response_type: Any
    #: Whether the method takes a request parameter at all.
    takes_request: bool
    #: Endpoint metadata published in the registry.
    metadata: dict[str, str] = field(default_factory=dict)

    def endpoint(self) -> Endpoint:
        """The registry description of this method."""
        return Endpoint(
            name=self.name,
            request=describe(self.request_type, "request") if self.takes_request else None,
            response=describe(self.response_type, "response"),
            metadata=dict(self.metadata),
        )


@dataclass(frozen=True, slots=True)
class Subscription:
    """One broker subscriber: a topic, the function called for each message, and the message type."""

    topic: str
    #: ``"Class.method"`` or the function's name: the endpoint name in the registry.
    name: str
    function: Callable[..., Any]
    #: The type each message payload is decoded into; ``None`` for plain values.
    message_type: Any
    queue: str | None = None

    def endpoint(self) -> Endpoint:
        """The registry description (Go Micro marks subscribers with ``subscriber``/``topic`` metadata)."""
        metadata = {"topic": self.topic, "subscriber": "true"}
        if self.queue:
            metadata["queue"] = self.queue
        return Endpoint(name=self.name, request=describe(self.message_type, "message"), metadata=metadata)


def _hints(function: Callable[..., Any], where: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception as exc:  # NameError for an unresolvable forward reference, TypeError for junk
        raise ConfigError(f"{where}: cannot resolve its type hints ({exc}); define the types at module level") from exc


def _stream_item(annotation: Any) -> tuple[bool, Any]:
    """``(True, item type)`` for ``AsyncIterator[X]`` and friends, else ``(False, annotation)``."""
    origin = typing.get_origin(annotation)
    if annotation in _STREAM_ORIGINS:
        return True, None
    if origin in _STREAM_ORIGINS:
        args = typing.get_args(annotation)
        return True, _plain(args[0]) if args else None
    return False, annotation


def _plain(annotation: Any) -> Any:
    """``None`` for "anything"; the annotation otherwise."""
    if annotation is Any or annotation is inspect.Parameter.empty or annotation is None:
        return None
    return annotation


def _request_parameter(function: Callable[..., Any], where: str) -> inspect.Parameter | None:
    """The request parameter (the first positional one after ``self``), or ``None`` if there is none."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot read its signature ({exc})") from exc
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = [p for p in signature.parameters.values() if p.kind in positional]
    keyword = [p for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    extra = [p.name for p in [*params[1:], *keyword] if p.default is inspect.Parameter.empty]
    if extra:
        raise ConfigError(
            f"{where}: takes required parameters besides the request ({', '.join(extra)}); a handler "
            "takes (self, request) and reads metadata through micro.context"
        )
    return params[0] if params else None


def method_of(name: str, function: Callable[..., Any], *, metadata: dict[str, str] | None = None) -> Method:
    """Resolve one bound async method (or async function) into a :class:`Method` named ``name``.

    :raises ~micro.errors.ConfigError: the function is not async, takes more
        than one required parameter, or has type hints that cannot be resolved.
    """
    where = f"handler {name}"
    is_generator = inspect.isasyncgenfunction(function)
    if not (is_generator or inspect.iscoroutinefunction(function)):
        raise ConfigError(f"{where}: must be an async def method or async generator, not {function!r}")
    hints = _hints(function, where)
    parameter = _request_parameter(function, where)
    request_streams, request_type = False, None
    if parameter is not None:
        request_streams, request_type = _stream_item(hints.get(parameter.name, inspect.Parameter.empty))
        request_type = _plain(request_type)
    returns = hints.get("return", inspect.Parameter.empty)
    response_streams, response_type = _stream_item(returns)
    response_type = _plain(response_type)
    if is_generator:
        response_streams = True
    if request_streams and response_streams:
        kind = Kind.BIDI_STREAM
    elif request_streams:
        kind = Kind.CLIENT_STREAM
    elif response_streams:
        kind = Kind.SERVER_STREAM
    else:
        kind = Kind.UNARY
    meta = dict(metadata or {})
    if kind.streaming:
        meta.setdefault("stream", "true")
        meta.setdefault("stream_kind", kind.value)
    return Method(
        name=name,
        function=function,
        kind=kind,
        request_type=request_type,
        response_type=response_type,
        takes_request=parameter is not None,
        metadata=meta,
    )


def _public_async(obj: object) -> list[tuple[str, Callable[..., Any]]]:
    found = []
    for attr in dir(type(obj)):
        if attr.startswith("_"):
            continue
        raw = inspect.getattr_static(obj, attr, None)
        if isinstance(raw, (staticmethod, classmethod)):
            raw = raw.__func__
        if not (inspect.iscoroutinefunction(raw) or inspect.isasyncgenfunction(raw)):
            continue
        found.append((attr, getattr(obj, attr)))
    return found


def methods_of(handler: object, *, name: str | None = None, metadata: dict[str, str] | None = None) -> list[Method]:
    """Every endpoint of ``handler``, an instance whose public async methods serve calls.

    :param name: the endpoint prefix; defaults to the class name (``"Say"`` gives ``"Say.hello"``).
    :param metadata: added to every endpoint's registry metadata.
    :raises ~micro.errors.ConfigError: ``handler`` is a class rather than an
        instance, has no public async method, or a method has a bad shape.
    """
    if isinstance(handler, type):
        raise ConfigError(
            f"handle() takes a handler instance, not the class {handler.__name__}; use {handler.__name__}()"
        )
    prefix = name or type(handler).__name__
    if not prefix or "." in prefix or any(c.isspace() for c in prefix):
        raise ConfigError(f"handler name must be non-empty without dots or spaces, got {prefix!r}")
    found = _public_async(handler)
    if not found:
        raise ConfigError(f"handler {prefix} has no public async methods to serve")
    return [method_of(f"{prefix}.{attr}", function, metadata=metadata) for attr, function in found]


def subscriptions_of(topic: str, subscriber: object, *, queue: str | None = None) -> list[Subscription]:
    """The subscriptions for ``subscriber``: an async function, or an instance whose public async methods all subscribe.

    Each function takes one parameter, the message payload, decoded into its
    type hint (Go Micro's ``func(ctx, *Msg) error``).

    :raises ~micro.errors.ConfigError: not async, a bad signature, or no async methods.
    """
    if inspect.iscoroutinefunction(subscriber):
        function = typing.cast(Callable[..., Any], subscriber)
        label = str(getattr(function, "__qualname__", None) or getattr(function, "__name__", "subscriber"))
        return [_subscription(topic, label.replace("<locals>.", ""), function, queue)]
    if isinstance(subscriber, type):
        raise ConfigError(f"subscribe() takes an instance or a function, not the class {subscriber.__name__}")
    if isinstance(subscriber, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        raise ConfigError(f"subscriber {subscriber.__qualname__} must be an async function")
    found = _public_async(subscriber)
    if not found:
        call = getattr(subscriber, "__call__", None)  # noqa: B004 - an object with an async __call__
        if call is not None and inspect.iscoroutinefunction(call):
            return [_subscription(topic, type(subscriber).__name__, call, queue)]
        raise ConfigError(f"subscriber {type(subscriber).__name__} has no public async methods")
    prefix = type(subscriber).__name__
    return [_subscription(topic, f"{prefix}.{attr}", function, queue) for attr, function in found]


def _subscription(topic: str, name: str, function: Callable[..., Any], queue: str | None) -> Subscription:
    where = f"subscriber {name}"
    if inspect.isasyncgenfunction(function):
        raise ConfigError(f"{where}: must be an async def function, not an async generator")
    hints = _hints(function, where)
    parameter = _request_parameter(function, where)
    if parameter is None:
        raise ConfigError(f"{where}: must take the message as its parameter")
    message_type = _plain(hints.get(parameter.name, inspect.Parameter.empty))
    return Subscription(topic=topic, name=name, function=function, message_type=message_type, queue=queue)


# -- type descriptions -----------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    """A short, module-free spelling: ``"HelloRequest"``, ``"list[str]"``, ``"Inner | None"``."""
    if tp is None or tp is type(None):
        return "None" if tp is type(None) else "any"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", None) or str(origin).replace("typing.", "")
        return f"{name}[{', '.join('...' if a is Ellipsis else _type_name(a) for a in args)}]" if args else name
    if isinstance(tp, type):
        return tp.__name__
    return repr(tp).replace("typing.", "")


def describe(tp: Any, name: str, *, _depth: int = 0, _seen: frozenset[Any] = frozenset()) -> Value:
    """A registry :class:`~micro.registry.Value` describing ``tp``, as Go Micro's reflection does.

    Dataclasses and pydantic models list their fields (recursively, stopping at
    cycles and at a depth of 8); containers describe their item type under the
    name ``"item"`` (and ``"key"``/``"value"`` for mappings); anything else is a leaf.
    """
    value = Value(name=name, type=_type_name(tp))
    if tp is None or _depth >= 8 or tp in _seen:
        return value
    seen = _seen | {tp}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        try:
            hints = typing.get_type_hints(tp)
        except Exception:  # unresolved forward references: describe names only
            hints = {}
        for f in dataclasses.fields(tp):
            value.values.append(describe(_plain(hints.get(f.name)), f.name, _depth=_depth + 1, _seen=seen))
        return value
    model_fields = getattr(tp, "model_fields", None)
    if isinstance(tp, type) and isinstance(model_fields, dict):  # a pydantic v2 model
        for field_name, info in model_fields.items():
            annotation = _plain(getattr(info, "annotation", None))
            value.values.append(describe(annotation, field_name, _depth=_depth + 1, _seen=seen))
        return value
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not Ellipsis]
    if origin in (typing.Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        if len(present) == 1:  # Optional[X]: describe X under the optional's name
            value.values = describe(present[0], name, _depth=_depth, _seen=_seen).values
    elif origin in (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Iterable) and args:
        value.values.append(describe(_plain(args[0]), "item", _depth=_depth + 1, _seen=seen))
    elif origin in (dict, collections.abc.Mapping) and len(args) == 2:
        value.values.append(describe(_plain(args[0]), "key", _depth=_depth + 1, _seen=seen))
        value.values.append(describe(_plain(args[1]), "value", _depth=_depth + 1, _seen=seen))
    return value
