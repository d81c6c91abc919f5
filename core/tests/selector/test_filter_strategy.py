"""Filters and strategies on their own, and the public names of both packages."""

from __future__ import annotations

import importlib

import pytest
from micro.registry import Endpoint, Node, Service
from micro.selector import filter_endpoint, filter_label, filter_version, random, round_robin


def services() -> list[Service]:
    return [
        Service("s", "1", nodes=[Node("a", "h:1", {"zone": "eu"}), Node("b", "h:2", {"zone": "us"})]),
        Service("s", "2", endpoints=[Endpoint("S.Call")], nodes=[Node("c", "h:3", {"zone": "eu"})]),
    ]


def test_filters_do_not_mutate_their_input() -> None:
    given = services()
    snapshot = [s.to_dict() for s in given]
    assert [s.version for s in filter_version("2")(given)] == ["2"]
    labelled = filter_label("zone", "eu")(given)
    assert [[n.id for n in s.nodes] for s in labelled] == [["a"], ["c"]]
    assert [s.version for s in filter_endpoint("S.Call")(given)] == ["2"]
    assert filter_label("zone", "mars")(given) == []
    assert [s.to_dict() for s in given] == snapshot


def test_round_robin_visits_each_node_once_per_cycle() -> None:
    nodes = [n for s in services() for n in s.nodes]
    next_node = round_robin(nodes)
    picks = [next_node().id for _ in range(9)]
    assert sorted(picks[:3]) == ["a", "b", "c"]
    assert picks[3:6] == picks[:3] == picks[6:]


def test_random_only_returns_given_nodes() -> None:
    nodes = [n for s in services() for n in s.nodes]
    next_node = random(nodes)
    assert {next_node().id for _ in range(300)} == {"a", "b", "c"}


@pytest.mark.parametrize("module", ["micro.registry", "micro.selector"])
def test_public_names_are_sorted_and_importable(module: str) -> None:
    package = importlib.import_module(module)
    assert package.__all__ == sorted(package.__all__)
    for name in package.__all__:
        assert getattr(package, name) is not None
