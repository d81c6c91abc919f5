"""``micro.Service``: a server, a client and everything they need, with one lifecycle.

A few lines make a service that registers itself, answers calls from other
processes, and stops cleanly on Ctrl-C::

    import micro

    class Say:
        async def hello(self, req: HelloRequest) -> HelloResponse:
            return HelloResponse(message=f"Hello {req.name}")

    service = micro.Service("greeter")
    service.handle(Say())
    service.run_forever()

The service is where everything is wired, once: every building block not
passed in is created through the plugin manager from one environment mapping
(``environ``, ``os.environ`` by default), so ``MICRO_REGISTRY=mdns`` or
``MICRO_BROKER=memory`` switch implementations without code changes, and a
service given its own ``environ`` sees nothing of the process's. One registry
instance is shared by the server, the selector and the broker, one transport by
the server and the client, one set of codecs by both; anything a block builds
for itself comes from the same wiring (its ``make``). No block looks anything
up on its own. See ``docs/design.md``, "Wiring".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib
import inspect
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from . import _env
from ._private import local_secret
from .auth.base import Auth
from .broker.base import Broker
from .client.base import CallWrapper, Client, PublishWrapper
from .component import Component
from .debug.handler import Debug, debug_options, mount
from .errors import ConfigError, Unavailable
from .options import Options
from .options import build as build_options
from .plugins import PluginManager, get_manager
from .registry.base import Registry
from .selector.base import Selector
from .server.base import HandlerWrapper, Server, SubscriberWrapper
from .server.handler import Method, Subscription
from .transport.base import Transport

__all__ = ["EXIT_STARTUP", "Hook", "Service", "ServiceOptions", "serve", "service_options"]

#: The exit status of :func:`serve` when the service cannot start on this configuration.
EXIT_STARTUP = 3

logger = logging.getLogger("micro.service")

C = TypeVar("C", bound=Component)

#: A lifecycle hook: a function of no arguments, sync or async.
Hook = Callable[[], Awaitable[None] | None]

HookName = Literal["before_start", "after_start", "before_stop", "after_stop"]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ServiceOptions(Options):
    """Settings of the service itself (not of one block), read by :func:`service_options`.

    ``None`` leaves the choice to the server's options (``MICRO_SERVER_REGISTER_TTL`` and its defaults).
    """

    #: Seconds a registration lives unless renewed (``MICRO_REGISTER_TTL``, Go Micro's name; ``90s`` works).
    register_ttl: float | None = None
    #: Seconds between renewals (``MICRO_REGISTER_INTERVAL``); half a ``register_ttl`` of 30s or less when unset.
    register_interval: float | None = None
    #: Run :meth:`Service.run_forever` on uvloop (``MICRO_UVLOOP=1``; needs ``asyncmicro-core[uvloop]``).
    uvloop: bool = False


#: Each :class:`ServiceOptions` field and the variable it is read from.
_SERVICE_VARIABLES: dict[str, str] = {
    "register_ttl": _env.variable("register", "ttl"),
    "register_interval": _env.variable("register", "interval"),
    "uvloop": _env.variable("uvloop"),
}


def service_options(environ: Mapping[str, str], **values: Any) -> ServiceOptions:
    """:class:`ServiceOptions` from ``environ``'s variables, overridden by ``values`` (``None`` values ignored).

    :raises ~micro.errors.InvalidOption: a value that does not convert, naming its variable.
    """
    strings = {key: environ[var] for key, var in _SERVICE_VARIABLES.items() if environ.get(var, "").strip()}
    given = {key: value for key, value in values.items() if value is not None}
    return build_options(ServiceOptions, strings, given, describe=lambda key: _SERVICE_VARIABLES.get(key, key))


class Service:
    """A named, versioned service: handlers, subscribers, a client, and their shared building blocks.

    :param name: the service name clients call (``micro call <name> ...``).
    :param version: registered with every node.
    :param address: where the server listens (``MICRO_SERVER_ADDRESS``; ``127.0.0.1:0`` by default).
    :param advertise: the address registered instead of the bound one.
    :param metadata: node metadata published in the registry.
    :param register_ttl: seconds a registration lives unless renewed;
        ``MICRO_REGISTER_TTL`` when omitted (60s by default).
    :param register_interval: seconds between renewals; ``MICRO_REGISTER_INTERVAL`` (30s, or half
        of a ``register_ttl`` of 30s or less).
    :param drain_timeout: seconds :meth:`stop` waits for in-flight calls (10s).
    :param auth: the auth that guards this service (``MICRO_AUTH``; ``noop``, the default, guards nothing).
        An auth that checks tokens or applies rules (``jwt``) is enforced on every call the server handles
        (:func:`micro.auth.server_wrapper`, refusing with ``Unauthorized`` or ``Forbidden``; deny-by-default
        with ``MICRO_AUTH_DENY_BY_DEFAULT=true``), and signs this service's own calls with its account
        (``MICRO_AUTH_ID``/``MICRO_AUTH_SECRET``, :func:`micro.auth.client_wrapper`). Built by the wiring, it
        keeps its accounts and rules in the configured store (``MICRO_STORE``), shared by every instance.
    :param server, client, broker, registry, selector, transport: use these
        instead of creating them. The service starts them all, but closes only
        the ones it created.
    :param wrappers: handler middleware; ``subscriber_wrappers`` and
        ``call_wrappers`` for subscribers and outgoing calls.
    :param before_start, after_start, before_stop, after_stop: lifecycle hooks,
        run in order; more can be added with :meth:`hook`.
    :param handle_signals: whether :meth:`run` stops on SIGINT and SIGTERM.
    :param debug: serve the built-in ``Debug`` handler (``micro debug``), tracing and counting every call;
        who may call it is ``MICRO_DEBUG_ACCESS`` (``off`` serves none of it), see :mod:`micro.debug.access`.
    :param environ: where ``MICRO_*`` variables are read (``os.environ`` by default).
    :raises ~micro.errors.ConfigError: a bad name, option or plugin selection.
    """

    def __init__(
        self,
        name: str,
        version: str = "latest",
        *,
        address: str | None = None,
        advertise: str | None = None,
        metadata: Mapping[str, str] | None = None,
        register_ttl: float | None = None,
        register_interval: float | None = None,
        drain_timeout: float | None = None,
        server: Server | None = None,
        client: Client | None = None,
        broker: Broker | None = None,
        registry: Registry | None = None,
        selector: Selector | None = None,
        transport: Transport | None = None,
        auth: Auth | None = None,
        wrappers: Sequence[HandlerWrapper] = (),
        subscriber_wrappers: Sequence[SubscriberWrapper] = (),
        call_wrappers: Sequence[CallWrapper] = (),
        before_start: Iterable[Hook] = (),
        after_start: Iterable[Hook] = (),
        before_stop: Iterable[Hook] = (),
        after_stop: Iterable[Hook] = (),
        handle_signals: bool = True,
        debug: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
            raise ConfigError(f"service name must be a non-empty string without whitespace, got {name!r}")
        environ = os.environ if environ is None else environ
        self._environ = environ
        self._owned: list[Component] = []
        self._hooks: dict[HookName, list[Hook]] = {
            "before_start": list(before_start),
            "after_start": list(after_start),
            "before_stop": list(before_stop),
            "after_stop": list(after_stop),
        }
        self.handle_signals = handle_signals

        settings = service_options(environ, register_ttl=register_ttl, register_interval=register_interval)
        #: The service-level settings, from ``environ`` and the keywords.
        self.options: ServiceOptions = settings
        register_ttl, register_interval = settings.register_ttl, settings.register_interval
        if register_interval is None and register_ttl is not None and register_ttl <= 30.0:
            # Renew well within a short TTL rather than fail on the 30s default interval.
            register_interval = register_ttl / 2

        # The wiring: every name is resolved here, from `environ` only, and handed in.
        manager: PluginManager = get_manager()
        make = manager.maker(environ)

        def create(interface: Callable[..., C], **wiring: Any) -> C:
            return self._own(manager.create(interface, environ=environ, wiring={"make": make, **wiring}))

        codecs = manager.codecs(environ)
        self.registry: Registry = registry if registry is not None else create(Registry)
        self.transport: Transport = transport if transport is not None else create(Transport)
        self.broker: Broker = broker if broker is not None else create(Broker, registry=self.registry)
        self.selector: Selector = selector if selector is not None else create(Selector, registry=self.registry)
        if server is None:
            server_options: dict[str, Any] = {"name": name, "version": version}
            for key, value in (
                ("address", address),
                ("advertise", advertise),
                ("metadata", dict(metadata) if metadata is not None else None),
                ("register_ttl", register_ttl),
                ("register_interval", register_interval),
                ("drain_timeout", drain_timeout),
            ):
                if value is not None:
                    server_options[key] = value
            server = self._own(
                manager.create(
                    Server,
                    environ=environ,
                    wiring={
                        "make": make,
                        "codecs": codecs,
                        "transport": self.transport,
                        "registry": self.registry,
                        "broker": self.broker,
                        "local_secret": functools.partial(local_secret, environ),
                    },
                    **server_options,
                )
            )
        self.server: Server = server
        if client is None:
            client = create(Client, codecs=codecs, transport=self.transport, selector=self.selector, broker=self.broker)
        self.client: Client = client
        if getattr(self.server.options, "local_only", False):
            # A local_only service talks to the user's other services: its own calls carry the proof too.
            from .auth.local import local_proof

            self.client.wrap(local_proof(environ=environ))
        #: The auth enforced on this service's calls (see the ``auth`` parameter).
        self.auth: Auth = auth if auth is not None else create(Auth)
        self._enforce_auth(self.auth)
        #: The built-in ``Debug`` handler (:func:`micro.debug.handler.mount`), or ``None`` when ``debug`` is
        #: false. With ``MICRO_DEBUG_ACCESS=off`` it is not served, but logs, traces and stats are still
        #: recorded (by the selected log, tracer and stats) and readable here, in-process.
        self.debug: Debug | None = None
        if debug:
            self.debug = mount(self, options=debug_options(environ), make=make)
        if wrappers:
            self.server.wrap(*wrappers)
        if subscriber_wrappers:
            self.server.wrap_subscriber(*subscriber_wrappers)
        if call_wrappers:
            self.client.wrap(*call_wrappers)
        self._started = False
        self._stopped: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None

    def _enforce_auth(self, auth: Auth) -> None:
        # Added before the Debug guard and the caller's wrappers, so it is the outermost: nothing runs for a
        # call the auth refuses.
        from .auth.wrappers import client_wrapper, server_wrapper

        if not auth.capabilities & {"tokens", "rules"}:
            if auth.options.deny_by_default:
                raise ConfigError(
                    f"MICRO_AUTH_DENY_BY_DEFAULT needs an auth that applies rules (MICRO_AUTH=jwt); "
                    f"the {auth.name or type(auth).__name__!r} auth lets every call in"
                )
            return
        self.server.wrap(server_wrapper(auth, deny_by_default=auth.options.deny_by_default))
        self.client.wrap(client_wrapper(auth))

    def _own(self, component: C) -> C:
        self._owned.append(component)
        return component

    @property
    def name(self) -> str:
        return self.server.options.name

    @property
    def environ(self) -> Mapping[str, str]:
        """Where this service reads ``MICRO_*`` variables."""
        return self._environ

    @property
    def version(self) -> str:
        return self.server.options.version

    @property
    def running(self) -> bool:
        return self._started

    def __repr__(self) -> str:
        return f"<Service {self.name} {self.version}>"

    # -- composition -----------------------------------------------------------------------------

    def handle(
        self, handler: object, *, name: str | None = None, metadata: dict[str, str] | None = None
    ) -> list[Method]:
        """Serve ``handler``'s public async methods; see :meth:`micro.server.Server.handle`."""
        return self.server.handle(handler, name=name, metadata=metadata)

    def subscribe(self, topic: str, subscriber: object, *, queue: str | None = None) -> list[Subscription]:
        """Deliver messages on ``topic`` to ``subscriber``; see :meth:`micro.server.Server.subscribe`."""
        return self.server.subscribe(topic, subscriber, queue=queue)

    def wrap(self, *wrappers: HandlerWrapper) -> None:
        """Add handler middleware (outermost first)."""
        self.server.wrap(*wrappers)

    def wrap_subscriber(self, *wrappers: SubscriberWrapper) -> None:
        """Add subscriber middleware (outermost first)."""
        self.server.wrap_subscriber(*wrappers)

    def wrap_call(self, *wrappers: CallWrapper) -> None:
        """Add middleware to the calls this service's client makes (outermost first)."""
        self.client.wrap(*wrappers)

    def wrap_publish(self, *wrappers: PublishWrapper) -> None:
        """Add middleware to the messages this service's client publishes (outermost first).

        See :meth:`micro.client.Client.wrap_publish`; raises :class:`~micro.errors.NotSupported` if the client
        runs none.
        """
        self.client.wrap_publish(*wrappers)

    def hook(self, when: HookName, function: Hook) -> Hook:
        """Run ``function`` at ``when`` (``"before_start"``, ``"after_start"``, ``"before_stop"``, ``"after_stop"``).

        Returns ``function``, so it can decorate: ``@functools.partial(service.hook, "after_start")``.
        """
        if when not in self._hooks:
            raise ConfigError(f"unknown hook {when!r}; hooks: {', '.join(self._hooks)}")
        self._hooks[when].append(function)
        return function

    async def _run_hooks(self, when: HookName) -> None:
        for function in self._hooks[when]:
            result = function()
            if inspect.isawaitable(result):
                await result

    # -- lifecycle -------------------------------------------------------------------------------

    def _guard(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def start(self) -> None:
        """Run ``before_start`` hooks, start the server (listen, subscribe, register), then ``after_start``.

        Idempotent. If anything fails, what was started is stopped again and
        the error is raised.
        """
        async with self._guard():
            if self._started:
                return
            await self._run_hooks("before_start")
            try:
                await self.auth.start()
                await self.server.start()
                await self.client.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await self.server.stop()
                await self._close_owned()
                raise
            self._started = True
            await self._run_hooks("after_start")

    async def stop(self) -> None:
        """Run ``before_stop`` hooks, stop the server gracefully (deregister, stop accepting, drain
        in-flight calls up to ``drain_timeout``), close what the service created, then ``after_stop``.

        Idempotent.
        """
        async with self._guard():
            if not self._started:
                return
            try:
                await self._run_hooks("before_stop")
            finally:
                try:
                    await self.server.stop()
                finally:
                    await self._close_owned()
                    self._started = False
                    if self._stopped is not None:
                        self._stopped.set()
            await self._run_hooks("after_stop")

    async def _close_owned(self) -> None:
        for component in reversed(self._owned):
            with contextlib.suppress(Exception):
                await component.close()

    def shutdown(self) -> None:
        """Ask a running :meth:`run` to stop, as SIGTERM does. Safe to call from a handler."""
        if self._stopped is not None:
            self._stopped.set()

    async def run(self) -> None:
        """Start, serve until SIGINT/SIGTERM (or :meth:`shutdown`), then stop gracefully.

        The signal handlers are installed before starting, so a signal that
        arrives while the service starts stops it as soon as it is up; they are
        removed again when ``run`` returns.
        """
        loop = asyncio.get_running_loop()
        stopped = self._stopped = asyncio.Event()
        installed: list[signal.Signals] = []
        if self.handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(signum, self._on_signal, signum)
                    installed.append(signum)
                except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
                    pass
        try:
            await self.start()
            await stopped.wait()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            await self.stop()

    def _on_signal(self, signum: signal.Signals) -> None:
        logger.info("%s: received %s, stopping", self.name, signum.name)
        self.shutdown()

    def run_forever(self, *, uvloop: bool | None = None) -> None:
        """:meth:`run` in a new event loop, blocking until the service stops.

        :param uvloop: run on uvloop (must be installed: ``pip install 'asyncmicro-core[uvloop]'``);
            ``MICRO_UVLOOP=1`` when omitted.
        """
        if uvloop is None:
            uvloop = self.options.uvloop
        if uvloop:
            try:
                _uvloop = importlib.import_module("uvloop")  # optional: asyncmicro-core[uvloop]
            except ImportError as exc:
                raise ConfigError(
                    "uvloop was requested but is not installed: pip install 'asyncmicro-core[uvloop]'"
                ) from exc
            _uvloop.run(self.run())
            return
        asyncio.run(self.run())

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def serve(build: Callable[[], Service], *, uvloop: bool | None = None) -> None:
    """A program's main: ``build()`` the service and :meth:`~Service.run_forever`, reporting a start-up failure
    as a person can act on it.

    A bad implementation name, a bad option (both :class:`~micro.errors.ConfigError`, whose message names
    the ``MICRO_*`` variable and lists what is installed), a backend that does not answer or an address
    that cannot be listened on at start-up (:class:`~micro.errors.Unavailable`) prints one line on stderr
    and exits with status :data:`EXIT_STARTUP` (3); the traceback is printed too only when
    ``MICRO_LOG_LEVEL=debug``. Any other error propagates as usual. Use :meth:`Service.run_forever`
    directly to handle them yourself::

        if __name__ == "__main__":
            serve(make_service)
    """
    import sys
    import traceback

    service: Service | None = None
    try:
        service = build()
        service.run_forever(uvloop=uvloop)
    except (ConfigError, Unavailable) as exc:
        environ = service.environ if service is not None else os.environ
        if environ.get(_env.variable("log", "level"), "").strip().lower() in ("debug", "trace"):
            traceback.print_exception(exc)
        where = f"{service.name}: " if service is not None else ""
        print(f"{where}cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_STARTUP) from None
