from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pytest
from micro.errors import InvalidOption
from micro.options import Options, build, parse_duration


@dataclass(frozen=True, kw_only=True, slots=True)
class Sample(Options):
    address: tuple[str, ...] = ()
    timeout: float = 5.0
    retries: int = 1
    secure: bool = False
    table: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    mode: Literal["a", "b"] = "a"

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise InvalidOption("must be >= 0", option="retries")


@pytest.mark.parametrize(
    ("text", "seconds"), [("5", 5.0), ("1.5", 1.5), ("250ms", 0.25), ("2m", 120.0), ("1h", 3600.0), ("10us", 1e-5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_build_converts_by_annotation() -> None:
    opts = build(
        Sample,
        {
            "ADDRESS": "a:1, b:2",
            "timeout": "250ms",
            "retries": "3",
            "secure": "yes",
            "table": "",
            "metadata": "k=v,x=y",
            "mode": "b",
        },
    )
    assert opts == Sample(
        address=("a:1", "b:2"),
        timeout=0.25,
        retries=3,
        secure=True,
        table=None,
        metadata={"k": "v", "x": "y"},
        mode="b",
    )


def test_values_win_over_strings() -> None:
    assert build(Sample, {"retries": "3"}, {"retries": 4}).retries == 4


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [
        ("retries", "many", "expected an integer"),
        ("secure", "perhaps", "expected a boolean"),
        ("timeout", "soon", "duration"),
        ("mode", "c", "expected one of 'a', 'b'"),
        ("metadata", "novalue", "key=value"),
    ],
)
def test_bad_strings_name_the_variable(key: str, text: str, message: str) -> None:
    with pytest.raises(InvalidOption, match=message) as info:
        build(Sample, {key: text}, describe=lambda k: f"MICRO_X_{k.upper()}")
    assert info.value.variable == f"MICRO_X_{key.upper()}"
    assert str(info.value).startswith(f"MICRO_X_{key.upper()}: ")


def test_post_init_check_names_the_variable() -> None:
    with pytest.raises(InvalidOption, match=r"^MICRO_X_RETRIES: must be >= 0$"):
        build(Sample, {"retries": "-1"}, describe=lambda k: f"MICRO_X_{k.upper()}")
    with pytest.raises(InvalidOption, match=r"^option 'retries': must be >= 0$"):
        build(Sample, {}, {"retries": -1})


def test_unknown_option_lists_known_ones() -> None:
    with pytest.raises(InvalidOption, match="known options: address, metadata, mode, retries, secure, table, timeout"):
        build(Sample, {"retry": "1"})


def test_replace_checks_again() -> None:
    opts = Sample()
    assert opts.replace(retries=2).retries == 2
    with pytest.raises(InvalidOption):
        opts.replace(retries=-5)
