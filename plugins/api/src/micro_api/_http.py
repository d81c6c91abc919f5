"""uvicorn's httptools protocol with a limit on the request head, which httptools itself does not bound."""

from __future__ import annotations

from typing import Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEAD", "LimitedHttpToolsProtocol"]

#: Largest request line plus headers, in bytes; more is answered 431 and the connection closed.
MAX_HEAD: Final = 64 * 1024

_TOO_LARGE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\nconnection: close\r\ncontent-length: 115\r\n\r\n"
    b'{"id":"micro.api","code":431,"detail":"the request head is over 64 KiB",'
    b'"status":"Request Header Fields Too Large"}'
)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """Counts the bytes of each request's head (from its first byte to the end of its headers)."""

    _in_head = True
    _head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            before = self._head_bytes
            self._head_bytes += len(data)
            # Over the limit only if the head does not end within it: a read that holds a small head and the
            # start of a large body (one 70 KB POST) is no head over the limit.
            if self._head_bytes > MAX_HEAD and data.find(b"\r\n\r\n", 0, max(0, MAX_HEAD - before) + 4) < 0:
                self.transport.write(_TOO_LARGE)
                self.transport.close()
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        # A request that begins inside a chunk already counted (pipelining) starts from zero: the bound is
        # approximate by one read, never absent.
        self._in_head = True
        self._head_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
