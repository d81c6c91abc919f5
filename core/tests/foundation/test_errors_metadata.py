from __future__ import annotations

import pytest
from micro import errors
from micro.metadata import Metadata


def test_metadata_is_case_insensitive_and_keeps_first_spelling() -> None:
    md = Metadata({"Micro-Id": "1"})
    md["micro-id"] = "2"
    md["Content-Type"] = "application/json"
    assert md["MICRO-ID"] == "2"
    assert list(md) == ["Micro-Id", "Content-Type"]
    assert "content-type" in md
    assert 3 not in md
    del md["CONTENT-TYPE"]
    assert len(md) == 1
    assert md == {"micro-id": "2"}
    assert md.merged({"MICRO-ID": "3", "x": "y"}) == Metadata(x="y", **{"Micro-Id": "3"})
    with pytest.raises(TypeError):
        md["n"] = 1  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, errors.BadRequest),
        (401, errors.Unauthorized),
        (403, errors.Forbidden),
        (404, errors.NotFound),
        (408, errors.Timeout),
        (409, errors.Conflict),
        (413, errors.MessageTooLarge),
        (500, errors.InternalError),
        (503, errors.Unavailable),
    ],
)
def test_remote_errors_are_also_local_classes(code: int, cls: type[errors.MicroError]) -> None:
    err = errors.from_wire({"id": "greeter", "code": code, "detail": "boom", "status": ""})
    assert isinstance(err, errors.RPCError)
    assert isinstance(err, cls)
    assert (err.id, err.code, err.detail) == ("greeter", code, "boom")
    assert err.status == cls.status
    assert errors.from_wire(err.to_json()).to_dict() == err.to_dict()


def test_from_wire_with_garbage_is_a_500_with_the_text() -> None:
    err = errors.from_wire(b"not json at all")
    assert err.code == 500
    assert err.detail == "not json at all"
    assert errors.from_wire('{"code": "x"}').code == 500
    assert errors.from_wire({"code": 418, "detail": "teapot"}).code == 418


def test_builtin_bases() -> None:
    assert issubclass(errors.NotFound, LookupError)
    assert issubclass(errors.Timeout, TimeoutError)
    assert issubclass(errors.Unavailable, ConnectionError)
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.NotSupported, NotImplementedError)


def test_retryable() -> None:
    assert errors.is_retryable(errors.Timeout())
    assert errors.is_retryable(errors.from_wire({"code": 503}))
    assert errors.is_retryable(ConnectionResetError())
    assert not errors.is_retryable(errors.from_wire({"code": 500}))
    assert not errors.is_retryable(errors.NotFound())
    assert not errors.is_retryable(ValueError())


def test_exported_names_are_sorted_and_complete() -> None:
    import micro
    import micro.errors

    for module in (micro, micro.errors):
        assert list(module.__all__) == sorted(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), name
