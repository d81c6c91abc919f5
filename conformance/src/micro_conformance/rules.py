"""The rules the interfaces' docstrings state, and the contract cases that check each one.

Every case of every contract belongs to exactly one rule (``tests/test_rules.py``
checks it), so a failing case names the promise it found broken:
``[S29] store.expiry: ...``. ``conformance/tests/test_catalogue.py`` keeps one
deliberately broken implementation per rule and checks that the suite catches
it with that rule's cases and no others. ``docs/conformance.md`` lists the table.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RULES", "Rule", "rule_for"]


@dataclass(frozen=True)
class Rule:
    """One promise of an interface, in the words of its docstrings, and the cases that check it."""

    #: ``<interface>.<name>``: what a failure message and the docs call it.
    id: str
    #: The promise, in one sentence.
    text: str
    #: The case ids that check it (``S04``...).
    cases: tuple[str, ...]

    @property
    def interface(self) -> str:
        return self.id.partition(".")[0]


def _rules(*rules: tuple[str, str, str]) -> tuple[Rule, ...]:
    return tuple(Rule(id, text, tuple(cases.split())) for id, cases, text in rules)


RULES: tuple[Rule, ...] = _rules(
    # -- every interface ------------------------------------------------------------------------------
    ("any.capabilities", "X00", "An implementation declares only capabilities its contract can check."),
    # -- store (micro.store.base) ---------------------------------------------------------------------
    ("store.lifecycle", "S01", "start() and close() are idempotent, and a closed store can be started again."),
    ("store.started", "S28", "Every operation before start() or after close() raises ConnectionClosed."),
    (
        "store.values",
        "S02 S03 S13 S34",
        "Values, metadata (as JSON would return it) and any non-empty Unicode key round-trip exactly.",
    ),
    (
        "store.misses",
        "S04 S06",
        "An exact read of a missing key raises RecordNotFound naming it; deleting a missing key does nothing.",
    ),
    ("store.overwrite", "S05 S23", "Writing a key again replaces its value, metadata and expiry."),
    (
        "store.ordering",
        "S07 S08 S09 S10 S11 S12",
        "Pattern reads and lists filter by prefix and suffix, sort by code point, then page by offset and limit.",
    ),
    (
        "store.scope",
        "S14 S15 S31",
        "A key in two tables or databases is two records; database=/table= None means the options' defaults.",
    ),
    (
        "store.copies",
        "S16",
        "Records are copied in and out: changing one after a write or a read never changes the store.",
    ),
    (
        "store.bad-input",
        "S17 S24 S26 S27 S30",
        "Bad input raises BadRequest naming the argument, before anything is written.",
    ),
    ("store.concurrency", "S18", "A store is safe to share between tasks: concurrent writes all land."),
    ("store.batches", "S19 S33", "read_many/write_many/delete_many act on every key given, in order, of any count."),
    ("store.bulk", "S20", "With 'bulk', a batch is atomic: a reader sees none or all of it."),
    (
        "store.expiry",
        "S21 S22 S29 S32 S35",
        "A record with a TTL reports the time it has left and, once expired, is invisible to every operation.",
    ),
    ("store.ttl-absent", "S25", "Without 'ttl', a TTL raises NotSupported and writes nothing."),
    # -- broker (micro.broker.base) -------------------------------------------------------------------
    (
        "broker.lifecycle",
        "B01 B02 B03",
        "start()/close() are idempotent, first use starts the broker, close() ends subscriptions and refuses use.",
    ),
    (
        "broker.delivery",
        "B04 B05 B06 B07",
        "Every message published reaches each subscriber once, intact; no subscribers is not an error.",
    ),
    ("broker.ordered", "B08", "With 'ordered', one publisher's messages reach each subscriber in publish order."),
    ("broker.broadcast", "B09 B10", "A subscriber gets every message of its topic and nothing of another topic."),
    (
        "broker.unsubscribe",
        "B11 B12 B25",
        "Once unsubscribe() returns the handler is not called again; a handler may unsubscribe itself.",
    ),
    (
        "broker.isolation",
        "B13 B28",
        "Handler exceptions are logged on micro.broker and kept on Event.error; they never end the subscription.",
    ),
    ("broker.queue", "B14 B15", "With 'queue', each message goes to exactly one member of each queue group."),
    ("broker.queue-absent", "B16", "Without 'queue', subscribe(queue=) raises NotSupported."),
    (
        "broker.settlement",
        "B17 B19 B20 B26 B27",
        "A delivery is settled once; nack or an unsettled return requeues it, a bounded number of times.",
    ),
    ("broker.ack-absent", "B18", "Without 'ack', subscribe(auto_ack=False) raises NotSupported."),
    ("broker.bad-input", "B21 B22", "Bad topics, messages and handlers raise BadRequest; big bodies MessageTooLarge."),
    ("broker.cross-process", "B23", "With 'cross-process', separate instances exchange messages."),
    (
        "broker.back-pressure",
        "B24",
        "publish() waits (or fails typed) rather than drop: a message whose publish returned is delivered.",
    ),
    # -- registry (micro.registry.base) ---------------------------------------------------------------
    (
        "registry.register",
        "R01 R02 R03",
        "register() is an upsert by node id under (name, version); get_service returns everything, sorted.",
    ),
    ("registry.deregister", "R04 R05", "deregister() removes only the nodes given; unknown nodes are not an error."),
    ("registry.not-found", "R06", "get_service of an unknown service raises ServiceNotFound naming it."),
    ("registry.list", "R07", "list_services() has one entry per (name, version) with live nodes."),
    ("registry.copies", "R08", "Services returned are copies: changing them never changes the registry."),
    (
        "registry.bad-input",
        "R09",
        "Empty names, nodes without id or address, repeated ids, a negative ttl: BadRequest.",
    ),
    ("registry.concurrency", "R10", "Every method is safe to call from several tasks at once."),
    (
        "registry.ttl",
        "R11 R12 R18",
        "With 'ttl', a node not registered again within its ttl disappears (a delete to watchers); ttl=0 never does.",
    ),
    ("registry.ttl-absent", "R13", "Without 'ttl', register(ttl>0) raises NotSupported."),
    (
        "registry.watch",
        "R14 R15 R19",
        "With 'watch', changes after watch() arrive in order, filtered, not replayed; a heartbeat is no change.",
    ),
    (
        "registry.watch-stop",
        "R16 R20",
        "stop() and close() end iteration, even for a reader already waiting; both repeat safely.",
    ),
    ("registry.watch-absent", "R17", "Without 'watch', watch() raises NotSupported."),
    ("registry.lifecycle", "R21", "A registry starts itself on first use."),
    (
        "registry.started",
        "R22",
        "After close(), every registry method (watch too) raises ConnectionClosed until start() is called again.",
    ),
    # -- sync (micro.sync.base) -----------------------------------------------------------------------
    (
        "sync.exclusive",
        "Y01 Y02 Y07 Y08 Y17 Y18",
        "One owner holds a lock at a time, and not re-entrantly; ids and prefixes are independent.",
    ),
    (
        "sync.ttl",
        "Y05 Y06 Y16",
        "A lock lapses after its ttl unless refreshed, and then no longer exists; ttl=None holds it until unlocked.",
    ),
    ("sync.waiting", "Y03 Y09", "lock() waits up to `wait` for the lock, then raises LockTimeout."),
    ("sync.release", "Y04", "unlock() of a free lock raises LockNotFound; of another owner's, LockHeld."),
    ("sync.cancellation", "Y10 Y22", "A cancelled lock() or try_lock() never leaves the lock held."),
    ("sync.close", "Y11 Y20", "close() releases the instance's locks and resigns its leaderships."),
    ("sync.started", "Y12", "An instance never started, or closed, refuses with ConnectionClosed."),
    ("sync.bad-input", "Y13", "An empty id, a bad ttl or wait raise BadRequest."),
    (
        "sync.leader",
        "Y14 Y15 Y19 Y21",
        "One leader at a time keeps its lease past the ttl, learns when it loses it, and resigns cleanly.",
    ),
    # -- transport (micro.transport.base) -------------------------------------------------------------
    (
        "transport.listen",
        "T01 T02 T22",
        "listen() binds port 0 to a free port, refuses a bound address, uses the option.",
    ),
    (
        "transport.integrity",
        "T03 T04 T10 T16 T19",
        "Messages arrive whole, in the order sent, headers and body unchanged, whatever the senders do.",
    ),
    (
        "transport.size",
        "T11",
        "A message over max_message_size is refused with MessageTooLarge; the socket stays usable.",
    ),
    (
        "transport.end-of-stream",
        "T05 T06 T25",
        "After the peer half-closes or closes, recv() returns what was sent, then raises ConnectionClosed.",
    ),
    (
        "transport.failure",
        "T07 T08 T14 T24",
        "Nothing waits forever: a dead address raises Unavailable, a timeout Timeout; closing fails sockets.",
    ),
    (
        "transport.sockets",
        "T09 T18 T23",
        "Sockets are independent; concurrent or cancelled recv() calls lose and duplicate nothing.",
    ),
    (
        "transport.close",
        "T12 T20",
        "close() repeats safely, wakes a waiting recv; a closed listener lets running sockets finish.",
    ),
    (
        "transport.started",
        "T26",
        "A transport starts on first use; after close(), dial and listen raise ConnectionClosed until start().",
    ),
    (
        "transport.exchange",
        "T27",
        "exchange() sends one message as a socket's last and returns the peer's first answer, or ConnectionClosed.",
    ),
    ("transport.handler", "T13", "A handler that raises ends only its own socket."),
    ("transport.bad-input", "T15", "Bad addresses and headers raise BadRequest."),
    ("transport.addresses", "T21", "socket.local and socket.remote name the two ends."),
    ("transport.tls", "T17", "With 'tls', configured peers exchange messages over TLS."),
    # -- tunnel (micro.tunnel.base) ------------------------------------------------------------------
    ("tunnel.lifecycle", "U01", "connect() binds a real address and connect() and close() repeat safely."),
    ("tunnel.links", "U02 U11", "Linked tunnels list each other's link (id, node, direction) and measure its delay."),
    (
        "tunnel.sessions",
        "U03 U06 U07",
        "Unicast sessions carry messages intact both ways, separately, with half-close.",
    ),
    (
        "tunnel.channels",
        "U04 U05 U08",
        "Dials reach only announced channels; bad names, double listens and closed listeners are refused.",
    ),
    ("tunnel.token", "U09", "A tunnel with another token gets no link: connect() raises Unauthorized."),
    ("tunnel.lost-link", "U10", "A session whose link dies raises LinkLost."),
    ("tunnel.encrypt", "U12", "With 'encrypt', links report that they are encrypted."),
    ("tunnel.modes", "U13 U14", "With 'multicast', multicast and broadcast reach the right listeners, one way."),
    # -- network (micro.network.base) -----------------------------------------------------------------
    ("network.lifecycle", "N01", "connect() gives the node an id and a real address; connect() and close() repeat."),
    (
        "network.routes",
        "N02",
        "A peer learns a node's services (node, gateway, metric 2); the node routes them locally; both list each other",
    ),
    ("network.withdrawal", "N03", "Routes go when their service deregisters or their node leaves; so does the node."),
    ("network.chain", "N04", "Routes cross a chain one hop (metric) at a time and never echo back to their node."),
    ("network.isolation", "N05", "Another network's adverts are ignored and a node with another token cannot join."),
    (
        "network.proxy",
        "N06",
        "With 'proxy', calls and streams reach a service behind a peer; no route: ServiceNotFound.",
    ),
    ("network.publish", "N07", "With 'publish', a message published at a proxy reaches subscribers behind peers once."),
    # -- codec (micro.codec.base) ---------------------------------------------------------------------
    ("codec.content-type", "K01", "content_type is a well-formed media type, unique among codecs."),
    ("codec.errors", "K02 K05", "What cannot be encoded or decoded raises CodecError, naming the type."),
    ("codec.round-trip", "K03 K04 K06", "Samples, RPC frames and large payloads round-trip."),
    ("codec.concurrency", "K07", "One instance serves concurrent tasks."),
    ("codec.values", "K08 K09", "With 'values', plain values round-trip and malformed input raises CodecError."),
    ("codec.values-absent", "K10", "Without 'values', plain values raise CodecError."),
    ("codec.typed", "K11 K12", "With 'typed', decoding builds dataclasses and names a wrong field."),
    ("codec.binary", "K13", "With 'binary', bytes inside values stay bytes."),
    ("codec.raw", "K14", "With 'raw', bytes pass through and nothing else is accepted."),
    ("codec.envelope", "K15", "With 'envelope', the frame carries id, endpoint and error."),
    # -- config sources (micro.config.base) -----------------------------------------------------------
    ("config.read", "C01 C02 C03", "read() returns the data with a checksum of it; reads without change agree."),
    ("config.change", "C04 C09", "A read after a change, or a write(), sees exactly the new data."),
    (
        "config.watch",
        "C05 C06 C07 C12",
        "With 'watch', changes (not the first reading) arrive; stop() and close() end watchers.",
    ),
    ("config.watch-absent", "C08", "Without 'watch', watch() raises NotSupported."),
    ("config.write-absent", "C10", "Without 'write', write() raises NotSupported."),
    ("config.malformed", "C11", "Malformed content raises and loads nothing."),
    # -- auth (micro.auth.base) -----------------------------------------------------------------------
    ("auth.generate", "A01", "generate() returns the account with its secret."),
    (
        "auth.tokens",
        "A02 A03 A04",
        "With 'tokens', a token inspects to its account; refresh tokens renew; bad ones raise InvalidToken.",
    ),
    ("auth.expiry", "A05", "An expired token raises InvalidToken."),
    ("auth.namespace", "A06", "A token of another namespace raises InvalidToken."),
    ("auth.bad-input", "A07", "Malformed token requests raise BadRequest."),
    ("auth.tokens-absent", "A08", "Without 'tokens', anything inspects."),
    ("auth.rules", "A09 A10 A11", "Rules are granted, listed and revoked, and verify() follows Go Micro's table."),
    ("auth.rules-absent", "A12", "Without 'rules', everything is allowed."),
    # -- selector (micro.selector.base) ---------------------------------------------------------------
    ("selector.errors", "L01 L02", "No such service: ServiceNotFound; nothing left after filters: NoneAvailable."),
    (
        "selector.select",
        "L03 L04 L05 L06",
        "next() returns nodes of the service, by the strategy asked for, within the filters.",
    ),
    (
        "selector.marks",
        "L07 L08 L09 L10 L11",
        "Failures demote a node until success, reset or cooldown; client errors do not; all demoted fails open.",
    ),
    ("selector.registry", "L12 L13", "Registry changes reach the selector; closing it leaves the registry alone."),
    # -- server and client (micro.server.base, micro.client.base) -------------------------------------
    (
        "server.calls",
        "P01 P02 P03 P07 P08",
        "A call reaches its handler and returns, values, types and metadata intact, concurrently.",
    ),
    ("server.errors", "P04 P05 P06", "Errors arrive typed; unknown endpoints and services and deadlines are enforced."),
    ("server.streams", "P09 P10", "Streams deliver in order, in each direction."),
    ("server.registration", "P11 P12 P14", "A started server is registered with its endpoints; stop() deregisters."),
    ("server.events", "P13", "A published event reaches the subscriber."),
)

_BY_CASE: dict[tuple[str, str], Rule] = {}
for _rule in RULES:
    for _case in _rule.cases:
        _BY_CASE[(_rule.interface, _case)] = _rule


def rule_for(interface: str, case: str) -> Rule | None:
    """The rule case ``case`` (``"S04"``, parameters dropped) of ``interface`` checks, if any."""
    case = case.partition("[")[0]
    return _BY_CASE.get((interface, case)) or _BY_CASE.get(("any", case))
