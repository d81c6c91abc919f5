"""``micro._mucp.parse``: routing headers split from metadata, whatever their spelling."""

from __future__ import annotations

from micro import _mucp
from micro.metadata import Metadata


def test_parse_splits_routing_from_metadata_in_every_spelling() -> None:
    routing, metadata = _mucp.parse(
        {
            "Micro-Service": "orders",
            "micro-endpoint": "Orders.create",
            "X-Micro-Id": "go-id",
            "CONTENT-TYPE": "application/json",
            "Timeout": "5000000000",
            "Micro-Trace-Id": "t1",
            "X-Note": "kept",
        }
    )
    assert routing == {
        "micro-service": "orders",
        "micro-endpoint": "Orders.create",
        "micro-id": "go-id",
        "content-type": "application/json",
        "timeout": "5000000000",
    }
    assert metadata == Metadata({"Micro-Trace-Id": "t1", "X-Note": "kept"})


def test_the_plain_spelling_wins_over_go_s_x_variant_in_either_order() -> None:
    assert _mucp.parse({"X-Micro-Id": "go", "Micro-Id": "plain"})[0] == {"micro-id": "plain"}
    assert _mucp.parse({"Micro-Id": "plain", "X-Micro-Id": "go"})[0] == {"micro-id": "plain"}
    assert _mucp.parse({"Micro-Local-Proof": "p"})[0] == {"micro-local-proof": "p"}
