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
        from ..client.base import Client
        from ..plugins import create

        client = create("client", cls=Client)
        try:
            await client.publish(topic, body, metadata=metadata, content_type="application/json")
            # A broker may deliver in the background (the http broker does); this process is about to
            # exit, so give it the chance to finish if it offers one.
            flush = getattr(getattr(client, "broker", None), "flush", None)
            if flush is not None:
                await flush()
        finally:
            await client.close()

    run(main, timeout=30.0)
    click.echo(f"published to {topic}", err=True)
