"""The codec interface: values to bytes and back, and the RPC message framing (Go Micro ``codec/codec.go``).

Go Micro splits this into a ``Marshaler`` (values) and a stream ``Codec``
(framed RPC messages); here one :class:`Codec` does both, synchronously,
because encoding is CPU work, not I/O. A codec is stateless once built: one
instance is shared by every call and every task.

The rules every codec follows, and the conformance suite checks:

* **Round trip.** ``unmarshal(marshal(v)) == v`` for the plain values the codec
  supports (``None``, ``bool``, ``int``, ``float``, ``str``, lists, ``str``-keyed
  dicts, nested); each codec documents how it maps what it cannot carry
  natively (tuples come back as lists, ``bytes`` in JSON as base64 text).
* **Typed decoding.** ``unmarshal(data, into=T)`` builds a ``T``: a dataclass
  (nested dataclasses, lists, dicts, optionals, enums), a pydantic v2 model,
  or a builtin such as ``dict``, ``list``, ``str`` or ``int``. See
  :mod:`micro.codec.types`.
* **Errors.** Bytes the codec cannot decode, a value it cannot encode, and data
  of the wrong shape for ``into`` all raise :class:`~micro.errors.CodecError`
  (a :class:`~micro.errors.BadRequest`, so a server answers 400). Its message
  starts with the codec's name and names the offending field:
  ``"json: cannot decode into Greeting: field 'name': missing"``.
* **Framing.** :meth:`Codec.encode` and :meth:`Codec.decode` turn one RPC
  :class:`Message` into one transport frame body and back. For plain codecs
  the frame is just the marshalled body: ids, endpoints, headers and errors
  travel in the transport message's header, set by the client and server.
  Envelope codecs (json-rpc) put the id, endpoint and error inside the frame
  and recover them in :meth:`~Codec.decode`.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, overload

from ..component import Component
from ..metadata import Metadata
from .options import CodecOptions

__all__ = ["Codec", "Message", "MessageType"]

T = TypeVar("T")


class MessageType(enum.Enum):
    """What an RPC frame carries (Go Micro ``codec.MessageType``)."""

    REQUEST = "request"
    RESPONSE = "response"
    EVENT = "event"
    ERROR = "error"


@dataclass(slots=True)
class Message:
    """One RPC frame before encoding or after decoding (Go Micro ``codec.Message``).

    Go Micro's ``Method`` and ``Endpoint`` are always the same string
    (``"Greeter.Hello"``); here there is only :attr:`endpoint`.
    """

    #: The call's id; a response carries its request's id.
    id: str = ""
    type: MessageType = MessageType.REQUEST
    #: The target service, e.g. ``"greeter"``.
    service: str = ""
    #: ``"Greeter.Hello"``.
    endpoint: str = ""
    header: Metadata = field(default_factory=Metadata)
    #: The payload: a value to marshal, or the value decoded.
    body: Any = None
    #: For :attr:`MessageType.ERROR`: the error, usually :meth:`MicroError.to_json` text.
    error: str = ""


class Codec(Component, abc.ABC):
    """Encodes values and RPC messages for one content type.

    Subclasses set :attr:`content_type` and implement :meth:`marshal` and
    :meth:`unmarshal`; the default :meth:`encode` / :meth:`decode` frame a
    message as its marshalled body alone.
    """

    interface: ClassVar[str] = "codec"
    options_type: ClassVar[type[CodecOptions]] = CodecOptions

    #: The MIME type this codec reads and writes, e.g. ``"application/json"``; unique per codec.
    content_type: ClassVar[str]
    #: Other spellings of :attr:`content_type` it also answers to, e.g. ``("application/x-msgpack",)``.
    aliases: ClassVar[tuple[str, ...]] = ()

    #: What this codec carries; codecs differ by design, so none is required:
    #:
    #: ``"values"``: plain values (``None``, bool, int, float, str, lists, str-keyed
    #: dicts, nested) round-trip through :meth:`marshal` and :meth:`unmarshal`.
    #:
    #: ``"typed"``: ``unmarshal(data, into=<dataclass>)`` builds it, and a missing or
    #: mistyped field raises :class:`~micro.errors.CodecError` naming it.
    #:
    #: ``"binary"``: ``bytes`` inside values come back as ``bytes``.
    #:
    #: ``"raw"``: bytes-like values pass through unchanged; nothing else is accepted.
    #:
    #: ``"proto"``: protobuf messages round-trip with ``into=<message class>``.
    #:
    #: ``"envelope"``: :meth:`encode` and :meth:`decode` carry a request's id and
    #: endpoint and an error's text in the frame itself.
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: CodecOptions | None = None) -> None:
        super().__init__(options)

    @abc.abstractmethod
    def marshal(self, value: Any) -> bytes:
        """The encoding of ``value``.

        Dataclasses and pydantic models are encoded as their fields.
        Raises :class:`~micro.errors.CodecError` for a value the codec cannot
        encode, naming its type.
        """

    @overload
    def unmarshal(self, data: bytes, into: type[T]) -> T: ...

    @overload
    def unmarshal(self, data: bytes, into: None = None) -> Any: ...

    @abc.abstractmethod
    def unmarshal(self, data: bytes, into: type[T] | None = None) -> T | Any:
        """The value encoded in ``data``, as plain values or converted to ``into``.

        ``data`` may be any bytes-like object. Raises
        :class:`~micro.errors.CodecError` when ``data`` is not valid for this
        codec (truncated, trailing bytes, another codec's output) or does not
        fit ``into`` (a missing required field, a wrong type), naming the field.
        """

    def encode(self, message: Message) -> bytes:
        """The frame body for ``message``: by default ``marshal(message.body)``.

        Only the body is encoded; the caller carries :attr:`Message.id`,
        :attr:`~Message.endpoint`, :attr:`~Message.header` and
        :attr:`~Message.error` in the transport header. Raises
        :class:`~micro.errors.CodecError` like :meth:`marshal`.
        """
        return self.marshal(message.body)

    def decode(self, data: bytes, type: MessageType, into: type[Any] | None = None) -> Message:
        """The :class:`Message` of ``type`` framed in ``data``, its body converted to ``into``.

        The default decodes the body only, leaving the other fields empty for
        the caller to fill from the transport header. Raises
        :class:`~micro.errors.CodecError` like :meth:`unmarshal`.
        """
        return Message(type=type, body=self.unmarshal(data, into))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.content_type}>"
