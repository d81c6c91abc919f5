"""The keywords of call/invoke/stream are written once (CallOptions, StreamOptions) and reach the client's hooks."""

from __future__ import annotations

import typing
from typing import Any

from micro.client import CallOptions, Client, Request, Response, Stream, StreamOptions
from micro.metadata import Metadata


class Recorder(Client):
    """A client implementing only the hooks: records what reached them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, Any, Any, dict[str, Any]]] = []

    async def _invoke(
        self, service: str, endpoint: str, request: Any, response_type: Any, options: CallOptions
    ) -> Response:
        self.seen.append((service, endpoint, request, response_type, dict(options)))
        return Response({"echo": request}, metadata=Metadata({"X-Seen": "1"}))

    async def _stream(
        self, service: str, endpoint: str, request: Any, response_type: Any, options: StreamOptions
    ) -> Stream:
        self.seen.append((service, endpoint, request, response_type, dict(options)))
        raise NotImplementedError

    async def publish(self, topic: str, message: Any, *, metadata: Any = None, content_type: Any = None) -> None:
        raise NotImplementedError

    def wrap(self, *wrappers: Any) -> None:
        raise NotImplementedError


def backoff(attempt: int) -> float:
    return 0.0


async def test_call_and_invoke_pass_the_keywords_given_to_the_hook() -> None:
    client = Recorder()
    body = await client.call("greeter", "Say.hello", 1, timeout=2.0, retries=0, metadata={"A": "b"}, backoff=backoff)
    assert body == {"echo": 1}
    assert client.seen[-1] == (
        "greeter",
        "Say.hello",
        1,
        None,
        {"timeout": 2.0, "retries": 0, "metadata": {"A": "b"}, "backoff": backoff},
    )
    response = await client.invoke("greeter", "Say.hello", response_type=dict, address="127.0.0.1:1", content_type="x")
    assert isinstance(response, Response)
    assert response.metadata["x-seen"] == "1"
    assert client.seen[-1] == ("greeter", "Say.hello", None, dict, {"address": "127.0.0.1:1", "content_type": "x"})


def test_the_keywords_are_the_documented_ones() -> None:
    # The public signature stays what callers have always written; adding one means adding it here.
    assert set(typing.get_type_hints(StreamOptions)) == {"timeout", "metadata", "address", "content_type"}
    assert set(typing.get_type_hints(CallOptions)) == {
        "timeout",
        "metadata",
        "address",
        "content_type",
        "retries",
        "backoff",
    }
    assert not CallOptions.__total__
    assert Request is not None
