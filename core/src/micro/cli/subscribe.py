"""``micro subscribe <topic>``: print the messages published on a topic as they arrive."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import click
import orjson

from ._service import dump, run

__all__ = ["command"]


def _body(body: bytes) -> Any:
    """The body as JSON if it is JSON, else as text."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


@click.command("subscribe")
@click.argument("topic")
@click.option("--queue", default=None, help="Join this queue: each message goes to one of its subscribers.")
@click.option("-n", "--count", type=click.IntRange(min=1), default=None, help="Exit after N messages.")
@click.option("--json", "as_json", is_flag=True, help='Print {"topic", "header", "body"} for each message.')
def command(topic: str, queue: str | None, count: int | None, as_json: bool) -> None:
    """Print each message published on TOPIC as one JSON line, as it arrives.

    Runs until Ctrl-C (or --count messages). Prints the body (JSON as sent, other
    bodies as a JSON string); --json adds the topic and the headers.

    \b
    micro subscribe user.created
    micro subscribe --json -n 1 user.created
    """

    async def main() -> None:
        from ..broker.base import Broker, Event
        from ..plugins import create

        broker = create("broker", cls=Broker)
        done = asyncio.Event()
        seen = 0

        async def handler(event: Event) -> None:
            nonlocal seen
            if done.is_set():
                return
            body = _body(event.message.body)
            line = {"topic": event.topic, "header": dict(event.message.header), "body": body} if as_json else body
            click.echo(dump(line, pretty=False))
            seen += 1
            if count is not None and seen >= count:
                done.set()

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, done.set)
        async with broker:
            await broker.subscribe(topic, handler, queue=queue)
            click.echo(f"subscribed to {topic} (Ctrl-C to stop)", err=True)
            await done.wait()

    run(main, timeout=None)
