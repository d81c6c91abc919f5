"""The helpers in micro.store.base that backends share: KeyFilter, check_list and the numeric bounds."""

from __future__ import annotations

import math

import pytest
from micro.errors import BadRequest, InvalidOption
from micro.store import Record, SQLiteStoreOptions
from micro.store.base import MAX_PAGE, MAX_TTL, KeyFilter, check_list, check_page, check_ttl
from micro.store.sqlite import SQLiteStore


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


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("value", [2**63, 2**64, 10**400])
def test_check_page_refuses_counts_past_64_bits_naming_the_argument(name: str, value: int) -> None:
    # Before the bound, SQLite raised an untyped OverflowError for these.
    with pytest.raises(BadRequest, match=rf"^{name} must be at most {MAX_PAGE} \(2\*\*63 - 1\), got "):
        check_page(**{"limit": None, "offset": 0, name: value})


def test_check_page_accepts_the_largest_count_and_refuses_other_types() -> None:
    check_page(MAX_PAGE, MAX_PAGE)
    check_page(None, 0)
    for bad in (True, 1.0, math.nan, math.inf, "1"):
        with pytest.raises(BadRequest, match=r"^limit must be an int"):
            check_page(bad, 0)
        with pytest.raises(BadRequest, match=r"^offset must be an int"):
            check_page(None, bad)


@pytest.mark.parametrize(
    "ttl", [MAX_TTL * 1.01, 1e20, 1e300, 2**70, 10**400, math.inf, -math.inf, math.nan, 0, -1, -0.0]
)
def test_check_ttl_refuses_out_of_range_numbers_naming_the_argument(ttl: float) -> None:
    # 10**400 used to raise OverflowError from math.isfinite; 1e300 was accepted and overflowed Redis's milliseconds.
    with pytest.raises(BadRequest, match=r"^record expiry must be a positive number of seconds up to 3155760000"):
        check_ttl(ttl, what="record expiry")


def test_check_ttl_accepts_up_to_max_ttl_and_refuses_bools() -> None:
    assert check_ttl(MAX_TTL) == MAX_TTL
    assert check_ttl(1) == 1.0
    assert check_ttl(None) is None
    with pytest.raises(BadRequest, match=r"^ttl must be a number of seconds or None, not bool"):
        check_ttl(True)


def test_a_huge_number_is_cut_short_in_the_message() -> None:
    with pytest.raises(BadRequest) as caught:
        check_page(10**400, 0)
    assert len(str(caught.value)) < 120, str(caught.value)
    assert "(401 digits)" in str(caught.value)


@pytest.mark.parametrize("value", [86_400.5, 1e300, 10**400, math.inf, math.nan, 0, -1, True])
def test_busy_timeout_is_bounded(value: float) -> None:
    with pytest.raises(InvalidOption, match="up to 86400") as caught:
        SQLiteStoreOptions(busy_timeout=value)
    assert caught.value.option == "busy_timeout"


async def test_sqlite_store_refuses_a_page_past_64_bits_with_bad_request() -> None:
    """The reported bug: limit/offset of 2**63 reached SQLite and raised OverflowError."""
    async with SQLiteStore(SQLiteStoreOptions(path=":memory:")) as store:
        await store.write(Record("k", b"v"))
        for paging in ({"limit": 2**63}, {"offset": 2**63}):
            with pytest.raises(BadRequest, match="must be at most"):
                await store.list(**paging)
            with pytest.raises(BadRequest, match="must be at most"):
                await store.read("", prefix=True, **paging)
        assert await store.list(limit=MAX_PAGE) == ["k"]
        assert await store.list(offset=MAX_PAGE, limit=MAX_PAGE) == []
