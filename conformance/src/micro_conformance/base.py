"""What every contract shares: building the implementation, capabilities, unique names, polling.

A contract is a pytest test class. Each ``test_<case>_<behaviour>`` method checks
one behaviour of one interface and is named by its case id (``test_s03_...`` is
case ``S03``). A concrete suite subclasses a contract and says what to test,
either by name (resolved exactly as ``MICRO_<INTERFACE>=<name>`` would be)::

    class TestRedisStore(StoreContract):
        name = "redis"
        options = {"address": ("redis://127.0.0.1:6379",)}

or by overriding :meth:`Contract.make`::

    class TestMyStore(StoreContract):
        async def make(self, **options):
            return MyStore(MyStoreOptions(**options))

Capabilities are checked both ways. A test marked :func:`requires` runs only when
the implementation declares that capability (else it is skipped with a reason
naming it); a test marked :func:`absent` runs only when it does *not*, and checks
that the optional operation raises :class:`~micro.errors.NotSupported` (or, where
the interface defines absence differently, as auth does, that behaviour). The
declaration is the implementation's ``capabilities`` class attribute, unless the
contract subclass sets :attr:`Contract.capabilities` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Generic, Self, TypeVar, cast

import pytest
import pytest_asyncio
from micro import _env
from micro.component import Component
from micro.errors import ConfigError, Unavailable
from micro.plugins import PluginManager, get_manager

from .testing import eventually

__all__ = [
    "ABSENT_MARKER",
    "CAPABILITY_MARKER",
    "Contract",
    "ContractViolation",
    "Names",
    "Unreachable",
    "absent",
    "case_id",
    "create",
    "declared_capabilities",
    "eventually",
    "new_run_id",
    "requires",
]

T = TypeVar("T", bound=Component)
C = TypeVar("C", bound=Component)

#: Marker of a test that runs only when the capability is declared.
CAPABILITY_MARKER: Final = "micro_capability"
#: Marker of a test that runs only when the capability is *not* declared.
ABSENT_MARKER: Final = "micro_absent"


class ContractViolation(AssertionError):
    """A contract case failed; the message starts with the case id and the rule it checks.

    ``[S10] limit and offset page through the sorted result ...: <what went wrong>``:
    raised by the pytest plugin in place of whatever the case raised (kept as
    ``__cause__``), so every failure names the rule it broke, whether the case's
    assertion failed or the implementation raised something unexpected.
    """


class Unreachable(Exception):
    """An implementation, or something it needs, could not start because its backend is unavailable.

    The report shows such a case as ``unreachable`` rather than failed: the
    suite could not judge the implementation.
    """


_CASE = re.compile(r"^test_([a-z]+\d+[a-z]?)_")


def case_id(test_name: str) -> str | None:
    """The case id in a test method's name: ``case_id("test_s03_missing_key") == "S03"``."""
    match = _CASE.match(test_name)
    return match.group(1).upper() if match else None


def requires(capability: str) -> pytest.MarkDecorator:
    """Mark a test that runs only when the implementation declares ``capability``."""
    return pytest.mark.micro_capability.with_args(capability)


def absent(capability: str) -> pytest.MarkDecorator:
    """Mark a test that runs only when ``capability`` is *not* declared (it checks ``NotSupported``)."""
    return pytest.mark.micro_absent.with_args(capability)


def new_run_id() -> str:
    """A fresh run id: 8 lower-case hex digits, safe in keys, topics, DNS labels and file names."""
    return uuid.uuid4().hex[:8]


_counter = itertools.count(1)


@dataclass(frozen=True)
class Names:
    """Unique names for one test: every one starts with the run id, so runs never see each other's data.

    ``names("orders")`` is ``"mc-<run>-<n>-orders"``: lower-case letters, digits
    and dashes only, so it is a valid key, topic, queue, service name and DNS label.
    """

    run_id: str
    serial: int = field(default_factory=lambda: next(_counter))

    @property
    def prefix(self) -> str:
        """What every name of this test starts with (and no other test's does)."""
        return f"mc-{self.run_id}-{self.serial}-"

    def __call__(self, label: str = "x") -> str:
        return self.prefix + label


def create(
    interface: str,
    name: str,
    *,
    strings: Mapping[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
    manager: PluginManager | None = None,
    **wiring: Any,
) -> Component:
    """An unstarted implementation of ``interface``, resolved as ``MICRO_<INTERFACE>=<name>`` would be.

    ``strings`` are option values as they would appear in ``MICRO_<INTERFACE>_<KEY>``
    variables; ``values`` are typed values and win over them. ``wiring`` is passed
    to the constructor by keyword after the options (``registry=`` for a selector);
    keywords the constructor does not take are dropped, as the plugin manager does.
    Raises :class:`~micro.errors.PluginNotFound`, :class:`~micro.errors.PluginConflict`
    or :class:`~micro.errors.InvalidOption` exactly as the runtime would.
    """
    manager = manager or get_manager()
    environ = {_env.variable(interface): name}
    environ.update({_env.variable(interface, key): value for key, value in (strings or {}).items()})
    return manager.create(interface, None, environ=environ, cls=Component, wiring=wiring, **dict(values or {}))


def declared_capabilities(impl: object) -> frozenset[str]:
    """What ``impl`` declares in its ``capabilities`` attribute (empty if it has none)."""
    found: object = getattr(impl, "capabilities", frozenset())
    return frozenset(found) if isinstance(found, (set, frozenset, tuple, list)) else frozenset()


class Contract(Generic[T]):
    """Base of every contract; see the module docstring.

    Tests get the started implementation from the contract's fixture (``store``,
    ``broker``...); :meth:`another` starts more instances on the same backend.
    Everything started is closed after the test, in reverse order.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]

    #: The interface, as in ``micro.create(interface, ...)`` (``"store"``).
    interface: ClassVar[str] = ""
    #: The implementation to test, resolved as ``MICRO_<INTERFACE>=<name>``; ``None`` if :meth:`make` is overridden.
    name: ClassVar[str | None] = None
    #: Typed option values passed to every instance (``{"table": "orders"}``).
    options: ClassVar[Mapping[str, Any]] = {}
    #: Option values as strings, converted as ``MICRO_<INTERFACE>_<KEY>`` variables are.
    option_strings: ClassVar[Mapping[str, str]] = {}
    #: What the implementation supports; ``None`` reads its ``capabilities`` class attribute.
    capabilities: ClassVar[frozenset[str] | None] = None
    #: The capabilities this contract knows how to check; declaring any other is a failure.
    known_capabilities: ClassVar[frozenset[str]] = frozenset()
    #: Seconds a time-based assertion waits before it fails.
    timeout: ClassVar[float] = 5.0
    #: Seconds a check that something does *not* happen watches for it.
    quiet_period: ClassVar[float] = 0.1

    names: Names
    _stack: AsyncExitStack
    _impl: T | None = None

    # -- what a subclass may override --------------------------------------------------------

    async def make(self, **options: Any) -> T:
        """A new, unstarted implementation; ``options`` are typed values over :attr:`options`."""
        if self.name is None:
            raise ConfigError(f"{type(self).__name__} sets neither `name` nor overrides `make()`")
        values = {**self.options, **options}
        return cast(T, create(self.interface, self.name, strings=self.option_strings, values=values))

    @classmethod
    def adapt(cls, implementation: type) -> type[Self]:
        """The contract class fitted to ``implementation``, for ``micro conformance``.

        The command knows only an interface and a name; a contract that needs more
        for the implementations it knows (a way to seed a config source, a
        selector's strategy) returns a subclass that has it. The default is ``cls``.
        """
        return cls

    # -- helpers for tests -------------------------------------------------------------------

    @property
    def declared(self) -> frozenset[str]:
        """The capabilities under test.

        :attr:`capabilities` if the contract sets it, else the implementation's
        ``capabilities`` attribute.
        """
        if self.capabilities is not None:
            return frozenset(self.capabilities)
        return declared_capabilities(self._impl)

    async def start(self, impl: C) -> C:
        """Start ``impl`` (the implementation or anything it needs) and close it when the test ends.

        :raises Unreachable: ``start()`` raised :class:`~micro.errors.Unavailable`.
        """
        try:
            await impl.start()
        except Unavailable as exc:
            raise Unreachable(f"{type(impl).__name__} could not start: {exc}") from exc
        self._stack.push_async_callback(impl.close)
        return impl

    async def another(self, **options: Any) -> T:
        """Another started instance, for tests that need two clients of one backend."""
        return await self.start(await self.make(**options))

    async def eventually(self, check: Callable[[], Any], what: str = "") -> Any:
        """:func:`eventually` with this contract's :attr:`timeout`."""
        return await eventually(check, timeout=self.timeout, what=what)

    async def quiet(self) -> None:
        """Give something that must *not* happen :attr:`quiet_period` to show up (negative checks only)."""
        await asyncio.sleep(self.quiet_period)

    def later(self, callback: Callable[[], Awaitable[Any]]) -> None:
        """Run ``callback`` when the test ends (before started instances are closed)."""
        self._stack.push_async_callback(callback)

    # -- the fixture behind every contract test ----------------------------------------------

    @pytest_asyncio.fixture(autouse=True)
    async def _micro_contract(self, request: pytest.FixtureRequest, micro_run_id: str) -> AsyncIterator[None]:
        """Per test: unique names, the exit stack, and the capability markers applied (which may skip)."""
        async with self._scope(request, micro_run_id):
            yield

    @contextlib.asynccontextmanager
    async def _scope(self, request: pytest.FixtureRequest, run_id: str) -> AsyncIterator[None]:
        self.names = Names(run_id)
        async with AsyncExitStack() as stack:
            self._stack = stack
            impl = await self.make()
            self._impl = impl
            request.node.user_properties.append(("micro_impl", f"{type(impl).__module__}:{type(impl).__qualname__}"))
            self._apply_markers(request.node, impl)
            yield

    @classmethod
    def generate_tests(cls, metafunc: pytest.Metafunc) -> None:
        """Parametrize this contract's tests (called from ``pytest_generate_tests``); the default does nothing."""

    @pytest_asyncio.fixture
    async def subject(self, _micro_contract: None) -> T:
        """The implementation under test, started (and closed after the test)."""
        assert self._impl is not None
        return await self.start(self._impl)

    def _apply_markers(self, node: pytest.Item, impl: T) -> None:
        declared = self.declared
        who = type(impl).__name__
        for marker in node.iter_markers(CAPABILITY_MARKER):
            (capability,) = marker.args
            if capability not in declared:
                pytest.skip(f"capability {capability!r} absent: {who} does not declare it")
        for marker in node.iter_markers(ABSENT_MARKER):
            (capability,) = marker.args
            if capability in declared:
                pytest.skip(f"capability {capability!r} declared by {who}; its absence check does not apply")

    async def test_x00_declared_capabilities_are_known(self, subject: T) -> None:
        """Every declared capability is one this contract can check, so none is claimed unverified."""
        unknown = sorted(self.declared - self.known_capabilities)
        assert not unknown, (
            f"{type(subject).__name__} declares capabilities the {self.interface} contract does not know: "
            f"{', '.join(map(repr, unknown))}; known: {', '.join(sorted(self.known_capabilities)) or 'none'}"
        )
