"""``micro publish <topic> '<json>'``: publish a message through the broker."""

from __future__ import annotations

import click

from ._service import parse_json, parse_metadata, run

__all__ = ["command"]


@click.command("publish")
@click.argument("topic")
@click.argument("message")
@click.option("-m", "--metadata", "pairs", multiple=True, metavar="KEY=VALUE", help="Add a message header.")
def command(topic: str, message: str, pairs: tuple[str, ...]) -> None:
    """Publish MESSAGE (JSON) on TOPIC, encoded as application/json.

    \b
    micro publish user.created '{"id": 1}'
    """
    body = parse_json(message, "MESSAGE")
    metadata = parse_metadata(pairs)

    async def main() -> None:
        from ..broker.base import Broker
        from ..client.base import Client
        from ..plugins import create

        client = create("client", cls=Client)
        try:
            await client.publish(topic, body, metadata=metadata, content_type="application/json")
            # The http broker delivers in the background and this process is about to exit: wait for it
            # (a Timeout, reported as 408, means deliveries were still being retried).
            broker = getattr(client, "broker", None)  # the Client interface does not require one
            if isinstance(broker, Broker):
                await broker.flush()
        finally:
            await client.close()

    run(main, timeout=30.0)
    click.echo(f"published to {topic}", err=True)
