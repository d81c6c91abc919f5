"""A ``Micro-Error`` header is whatever the remote side sent: decoding it must never raise anything else,
nor grow the client's memory with every new code a hostile server invents."""

from __future__ import annotations

import pytest
from micro import errors


@pytest.mark.parametrize(
    "text",
    [
        '{"code": 1e400, "detail": "x"}',  # a float that overflows: int(inf) raises OverflowError
        '{"code": "' + "9" * 5000 + '"}',  # too many digits for int()
        '{"code": NaN}',
        '{"code": [1]}',
        "[" * 100_000 + "]" * 100_000,  # nesting deeper than the JSON decoder's recursion limit
        '{"code": 404, "detail": {"nested": true}}',
        "",
        "not json at all",
    ],
    ids=lambda t: repr(t[:16]),
)
def test_any_error_text_decodes_to_an_rpc_error(text: str) -> None:
    error = errors.from_wire(text)
    assert isinstance(error, errors.RPCError)
    assert isinstance(error.code, int)


def test_unknown_codes_are_not_remembered() -> None:
    before = len(errors._REMOTE_CLASSES)
    for code in range(1000, 3000):
        assert errors.from_wire({"code": code}).code == code
    assert len(errors._REMOTE_CLASSES) <= before + 1
    assert isinstance(errors.from_wire({"code": 404}), errors.NotFound)
