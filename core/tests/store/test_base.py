"""The helpers in micro.store.base that backends share: KeyFilter and check_list."""

from __future__ import annotations

import pytest
from micro.errors import BadRequest
from micro.store.base import KeyFilter, check_list


def test_select_filters_sorts_then_pages() -> None:
    keys = ["b/x", "a/y", "a/x", "c", "a/"]
    assert KeyFilter(prefix="a/").select(keys) == ["a/", "a/x", "a/y"]
    assert KeyFilter(suffix="x").select(keys) == ["a/x", "b/x"]
    assert KeyFilter(prefix="a/", suffix="x").select(keys) == ["a/x"]
    assert KeyFilter(offset=1, limit=2).select(keys) == ["a/x", "a/y"]
    assert KeyFilter(offset=4, limit=0).select(keys) == []
    assert KeyFilter(offset=9).select(keys) == []


def test_for_read_uses_the_key_as_prefix_suffix_or_both() -> None:
    assert KeyFilter.for_read("k", prefix=True, suffix=False, limit=None, offset=0) == KeyFilter(prefix="k")
    assert KeyFilter.for_read("k", prefix=False, suffix=True, limit=3, offset=1) == KeyFilter("", "k", 3, 1)
    assert KeyFilter.for_read("k", prefix=True, suffix=True, limit=None, offset=0) == KeyFilter("k", "k")


def test_check_list_returns_the_filter_or_refuses_bad_input() -> None:
    assert check_list("p", "s", 2, 1) == KeyFilter("p", "s", 2, 1)
    with pytest.raises(BadRequest, match="suffix must be a str"):
        check_list("p", 3, None, 0)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="offset must not be negative"):
        check_list("", "", None, -1)
