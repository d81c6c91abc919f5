"""One typed-conversion engine: options, typed config and guessed config values spell scalars alike."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from micro._scalars import FALSE_WORDS, TRUE_WORDS, guess_scalar, parse_bool, parse_duration, parse_float, parse_int
from micro.config._scan import convert
from micro.errors import ConfigError, InvalidOption
from micro.options import Options, build


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Knobs(Options):
    flag: bool = False
    count: int = 0
    ratio: float = 0.0


def options_value(field: str, text: str) -> Any:
    return getattr(build(Knobs, {field: text}), field)


def config_value(annotation: Any, text: str) -> Any:
    return convert(text, annotation, "x")


ENGINES = [pytest.param(options_value, id="options"), pytest.param(None, id="config")]


def value_of(engine: Any, field: str, annotation: Any, text: str) -> Any:
    return engine(field, text) if engine is not None else config_value(annotation, text)


REFUSED = (InvalidOption, ConfigError)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("word", sorted(TRUE_WORDS | FALSE_WORDS))
def test_every_boolean_spelling_means_the_same_in_every_engine(engine: Any, word: str) -> None:
    for spelling in (word, word.upper(), word.title(), f" {word} "):
        assert value_of(engine, "flag", bool, spelling) is (word in TRUE_WORDS), spelling


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("text", ["maybe", "2", "enabled", "yess"])
def test_other_words_are_not_booleans_anywhere(engine: Any, text: str) -> None:
    with pytest.raises(REFUSED, match="expected a boolean"):
        value_of(engine, "flag", bool, text)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("text", "expected"), [("42", 42), ("-7", -7), ("+3", 3), (" 5 ", 5)])
def test_integers_are_ascii_decimal_everywhere(engine: Any, text: str, expected: int) -> None:
    assert value_of(engine, "count", int, text) == expected


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("text", ["1_000", "\u0661\u0662", "0x10", "1.0", "1e3", ""])
def test_the_same_integers_are_refused_everywhere(engine: Any, text: str) -> None:
    # options used int(), which took "1_000" and Arabic-Indic digits; config did not.
    with pytest.raises(REFUSED, match="integer"):
        value_of(engine, "count", int, text)


@pytest.mark.parametrize(("text", "expected"), [("1.5", 1.5), (".5", 0.5), ("2e3", 2000.0), ("-4", -4.0)])
def test_numbers_parse_alike_in_options_config_and_durations(text: str, expected: float) -> None:
    assert options_value("ratio", text) == expected
    assert config_value(float, text) == expected
    assert parse_float(text) == expected
    assert parse_duration(text + "s") == expected


def test_durations_take_go_units() -> None:
    assert parse_duration("250ms") == pytest.approx(0.25)
    assert parse_duration(" 2m ") == 120.0
    for bad in ("5 parsecs", "nan", "inf", "1_0s", ""):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_guessing_takes_only_gos_boolean_words() -> None:
    assert [guess_scalar(t) for t in ("true", "T", "False", "f")] == [True, True, False, False]
    # Ordinary words stay text until a field asks for a bool: "on" is a fine config value.
    assert [guess_scalar(t) for t in ("on", "yes", "n", "tRuE")] == ["on", "yes", "n", "tRuE"]
    assert [guess_scalar(t) for t in ("1", "-2", "1.5", "1_000", " 5", "nan")] == [1, -2, 1.5, "1_000", " 5", "nan"]


def test_the_functions_raise_value_error_naming_the_text() -> None:
    with pytest.raises(ValueError, match="'sure'"):
        parse_bool("sure")
    with pytest.raises(ValueError, match="'x1'"):
        parse_int("x1")
    with pytest.raises(ValueError, match="'one'"):
        parse_float("one")
