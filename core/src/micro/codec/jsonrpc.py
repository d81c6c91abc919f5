"""``application/json-rpc``: JSON bodies in Go Micro's JSON-RPC envelope."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from ..errors import CodecError
from .base import Message, MessageType
from .json import JSONCodec

__all__ = ["JSONRPCCodec"]


def _wire_id(id: str) -> int | str:
    # Go Micro's client numbers its calls; send such ids as numbers, as it does.
    return int(id) if id.isdigit() and str(int(id)) == id else id


class JSONRPCCodec(JSONCodec):
    """JSON-RPC 1.0 framing, as Go Micro's ``jsonrpc`` codec writes it.

    * request: ``{"method": endpoint, "params": [body], "id": id}``
    * response: ``{"id": id, "result": body, "error": null}``
    * error: ``{"id": id, "result": null, "error": "<error text>"}``
    * event: the body alone, as with ``application/json``.

    :meth:`decode` recovers ``id``, ``endpoint`` and ``error`` from the
    envelope; a response whose ``error`` is set comes back as
    :attr:`MessageType.ERROR`. A request whose ``params`` is an object (as
    JSON-RPC 2.0 allows) takes that object as the body. :meth:`marshal` and
    :meth:`unmarshal` are plain JSON.
    """

    content_type: ClassVar[str] = "application/json-rpc"
    aliases: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[frozenset[str]] = frozenset({"values", "typed", "envelope"})
    label: ClassVar[str] = "json-rpc"

    def encode(self, message: Message) -> bytes:
        kind = message.type
        envelope: dict[str, Any]
        if kind is MessageType.REQUEST:
            envelope = {"method": message.endpoint, "params": [message.body], "id": _wire_id(message.id)}
        elif kind is MessageType.RESPONSE:
            envelope = {"id": _wire_id(message.id), "result": message.body, "error": message.error or None}
        elif kind is MessageType.ERROR:
            envelope = {"id": _wire_id(message.id), "result": None, "error": message.error or "error"}
        else:
            return self.marshal(message.body)
        return self.marshal(envelope)

    def decode(self, data: bytes, type: MessageType, into: type[Any] | None = None) -> Message:
        if type is MessageType.EVENT:
            return Message(type=type, body=self.unmarshal(data, into))
        envelope = self.unmarshal(data)
        if not isinstance(envelope, dict):
            raise CodecError(f"json-rpc: expected an envelope object, got {_kind(envelope)}")
        raw_id = envelope.get("id")
        id = "" if raw_id is None else str(raw_id)
        if type is MessageType.REQUEST:
            method = envelope.get("method")
            if not isinstance(method, str) or not method:
                raise CodecError("json-rpc: request has no method")
            params = envelope.get("params")
            if isinstance(params, list):
                if len(params) > 1:
                    raise CodecError(f"json-rpc: request has {len(params)} params, expected one")
                body = params[0] if params else None
            elif params is None or isinstance(params, dict):
                body = params
            else:
                raise CodecError(f"json-rpc: params must be a list or an object, got {_kind(params)}")
            return Message(id=id, type=type, endpoint=method, body=self._body(body, into))
        if "result" not in envelope and "error" not in envelope:
            raise CodecError("json-rpc: response has neither result nor error")
        error = envelope.get("error")
        if error is not None:
            text = error if isinstance(error, str) else orjson.dumps(error).decode()
            return Message(id=id, type=MessageType.ERROR, error=text)
        return Message(id=id, type=type, body=self._body(envelope.get("result"), into))

    def _body(self, value: Any, into: type[Any] | None) -> Any:
        return value if into is None else self._convert(value, into)


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)
