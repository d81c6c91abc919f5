"""The routing table's rules: metrics, the best route, split horizon and every way a route is withdrawn."""

from micro.network.router import MAX_METRIC, Advertised, Table


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def table(clock: Clock | None = None, ttl: float = 3.0) -> Table:
    return Table("me", "micro", ttl=ttl, clock=clock or Clock())


def entry(service: str = "greeter", node: str = "c", metric: int = 1, delay: float = 0.0, address: str = "c:1"):
    return Advertised(service, "1.0", address, node, metric, delay)


def test_a_learned_route_is_one_hop_further_and_adds_the_link_delay():
    t = table()
    assert t.process("b", [entry(metric=1, delay=0.002)], link="L1", delay=0.001)
    (route,) = t.routes()
    assert (route.service, route.node, route.gateway, route.link, route.metric) == ("greeter", "c", "b", "L1", 2)
    assert route.delay == 0.003
    assert route.network == "micro"


def test_the_best_route_has_fewest_hops_then_least_delay():
    t = table()
    t.process("far", [entry(metric=3, delay=0.0)], delay=0.0)
    t.process("slow", [entry(metric=1, delay=0.5)], delay=0.0)
    t.process("fast", [entry(metric=1, delay=0.1)], delay=0.0)
    best = t.best("greeter")
    assert best is not None
    assert best.gateway == "fast"
    assert [r.gateway for r in t.alternatives("greeter")] == ["fast", "slow", "far"]
    # one route per service node in routes(): the best
    assert [r.gateway for r in t.routes("greeter")] == ["fast"]
    assert t.best("nobody") is None


def test_an_advert_replaces_the_gateways_routes_so_omitted_ones_are_withdrawn():
    t = table()
    t.process("b", [entry("greeter"), entry("users", node="u", address="u:1")])
    assert {r.service for r in t.routes()} == {"greeter", "users"}
    assert t.process("b", [entry("users", node="u", address="u:1")])  # a change
    assert [r.service for r in t.routes()] == ["users"]
    assert not t.process("b", [entry("users", node="u", address="u:1")])  # the same again: no news


def test_when_the_best_gateway_goes_the_alternative_takes_over_at_once():
    t = table()
    t.process("b", [entry(metric=1)])
    t.process("d", [entry(metric=2)])
    assert t.best("greeter").gateway == "b"  # type: ignore[union-attr]
    assert t.withdraw("b")
    assert t.best("greeter").gateway == "d"  # type: ignore[union-attr]
    assert not t.withdraw("b")


def test_routes_expire_ttl_after_their_gateways_last_advert():
    clock = Clock()
    t = table(clock, ttl=3.0)
    t.process("b", [entry()])
    clock.now += 2.9
    assert not t.expire()
    t.process("b", [entry()])  # refreshed
    clock.now += 2.9
    assert not t.expire()
    assert t.routes()
    t.postpone(1.0)  # this node stalled for a second: that second does not count
    clock.now += 1.0
    assert not t.expire()
    clock.now += 0.2
    assert t.expire()
    assert t.routes() == []
    assert t.gateways() == []


def test_own_routes_and_loops_are_dropped():
    t = table()
    t.process("b", [entry(node="me"), entry(metric=MAX_METRIC - 1), entry(metric=MAX_METRIC - 2, node="x")])
    assert [(r.node, r.metric) for r in t.routes()] == [("x", MAX_METRIC - 1)]


def test_split_horizon_does_not_tell_a_gateway_its_own_routes():
    t = table()
    t.process("b", [entry("greeter")])
    t.process("d", [entry("users", node="u", address="u:1")])
    assert [r.service for r in t.advert("b")] == ["users"]
    assert [r.service for r in t.advert("d")] == ["greeter"]
    assert {r.service for r in t.advert("x")} == {"greeter", "users"}
    # a route one hop short of the limit is not passed on
    t.process("e", [entry("far", node="f", metric=MAX_METRIC - 2, address="f:1")])
    assert "far" not in {r.service for r in t.advert("x")}
