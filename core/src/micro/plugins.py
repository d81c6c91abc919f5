"""Finding plugins, and turning a name (or ``MICRO_<INTERFACE>``) into an instance.

:class:`PluginManager` loads every distribution's ``micro.plugins`` entry
point once, on first use, checks it against the installed core version (distribution ``asyncmicro-core``),
validates its hooks, and records what each one registers. :meth:`PluginManager.create`
then picks a factory by name, builds its options from ``MICRO_*`` variables and
keyword arguments, and returns an instance that has done no I/O yet.

Every mistake is reported here, at start-up: an unknown name lists what is
installed (and what was found but not loaded), two distributions claiming one
name are both named, and a bad option names its variable.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata as metadata
import inspect
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast, overload

import pluggy
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from . import _env, hookspecs
from ._version import __version__
from .component import Component
from .errors import ConfigError, InvalidOption, MissingExtra, PluginConflict, PluginNotFound
from .options import Options, build

if TYPE_CHECKING:
    from .auth import Auth
    from .broker import Broker
    from .client import Client
    from .codec import Codec
    from .config import Source
    from .debug.log import Log
    from .debug.stats import Stats
    from .debug.trace import Tracer
    from .network import Network
    from .registry import Registry
    from .runtime import Runtime
    from .selector import Selector
    from .server import Server
    from .store import Store
    from .sync import Sync
    from .transport import Transport
    from .tunnel import Tunnel

__all__ = [
    "CORE_DISTRIBUTION",
    "ENTRY_POINT_GROUP",
    "Distribution",
    "PluginInfo",
    "PluginManager",
    "Provider",
    "create",
    "get_manager",
]

ENTRY_POINT_GROUP: Final = "micro.plugins"
CORE_DISTRIBUTION: Final = "asyncmicro-core"
#: The core's name before 0.1.0 was published. On the public package index it is an unrelated
#: package, so a plugin that still requires it makes pip replace the real core with that one.
LEGACY_CORE_DISTRIBUTION: Final = "micro-core"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_KINDS: Final = (*hookspecs.INTERFACES, "command")

C = TypeVar("C", bound=Component)


@dataclass(frozen=True, slots=True)
class Distribution:
    """The installed distribution a plugin came from."""

    name: str
    version: str
    #: The core (``asyncmicro-core``) specifier it declares (``">=0.1,<0.2"``), ``""`` for any, ``None`` if undeclared.
    core_range: str | None = None

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


@dataclass(frozen=True, slots=True)
class Provider:
    """One ``register(name, factory)`` call: a name for an interface, and where it came from."""

    interface: str
    name: str
    factory: type | str
    default: bool
    plugin: str
    distribution: Distribution | None

    @property
    def origin(self) -> str:
        return str(self.distribution) if self.distribution else f"plugin {self.plugin!r} (registered in code)"


Status = Literal["ok", "incompatible", "invalid", "error"]


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One plugin found on the path, loaded or not."""

    name: str
    distribution: Distribution | None
    status: Status
    reason: str = ""


def _core_version() -> str:
    try:
        return metadata.version(CORE_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return __version__


def _core_range(dist: metadata.Distribution, core: str = CORE_DISTRIBUTION) -> str | None:
    """The specifier ``dist`` puts on ``core`` outside any extra, ``None`` if it does not require it."""
    for line in dist.requires or ():
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) == core and (req.marker is None or req.marker.evaluate({"extra": ""})):
            return str(req.specifier)
    return None


class PluginManager:
    """Loads plugins and creates instances by interface and name.

    :param group: the entry-point group to scan.
    :param path: where to look for distributions (``sys.path`` when ``None``).
    :param entry_points: set ``False`` to load nothing automatically; plugins
        can still be added with :meth:`register`. The built-in defaults are
        then added from :mod:`micro.defaults` directly.
    """

    def __init__(
        self,
        *,
        group: str = ENTRY_POINT_GROUP,
        path: list[str] | None = None,
        entry_points: bool = True,
    ) -> None:
        self.group = group
        self.path = path
        self.entry_points = entry_points
        self.core_version = _core_version()
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._lock = threading.RLock()
        self._loaded = False
        self._infos: dict[str, PluginInfo] = {}
        self._providers: dict[tuple[str, str], list[Provider]] | None = None
        self._factories: dict[tuple[str, str], type] = {}

    # -- loading ---------------------------------------------------------------------------------

    def load(self) -> None:
        """Load every plugin once; later calls do nothing."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            found_core = False
            if self.entry_points:
                seen: set[str] = set()
                dists = metadata.distributions(path=self.path) if self.path is not None else metadata.distributions()
                for dist in dists:
                    dist_name = canonicalize_name(dist.metadata["Name"] or "")
                    if dist_name in seen:
                        continue  # an earlier path entry shadows it, as for imports
                    seen.add(dist_name)
                    for ep in dist.entry_points:
                        if ep.group != self.group:
                            continue
                        found_core = found_core or dist_name == CORE_DISTRIBUTION
                        self._load_entry_point(dist, ep)
            if not found_core:
                from . import defaults

                self.register(defaults, "builtin", Distribution(CORE_DISTRIBUTION, self.core_version, ""))

    def _load_entry_point(self, dist: metadata.Distribution, ep: metadata.EntryPoint) -> None:
        name = canonicalize_name(dist.metadata["Name"] or "")
        is_core = name == CORE_DISTRIBUTION
        info = Distribution(
            name=dist.metadata["Name"] or name,
            version=dist.version,
            core_range="" if is_core else _core_range(dist),
        )
        plugin_name = f"{info.name}:{ep.name}"
        if (
            not is_core
            and info.core_range is None
            and (legacy := _core_range(dist, LEGACY_CORE_DISTRIBUTION)) is not None
        ):
            self._infos[plugin_name] = PluginInfo(
                plugin_name,
                info,
                "incompatible",
                f"requires {LEGACY_CORE_DISTRIBUTION}{legacy}, an unrelated package on the public index:"
                f" micro's core is {CORE_DISTRIBUTION}, declare {CORE_DISTRIBUTION}{legacy} instead",
            )
            return
        if not is_core and info.core_range:
            try:
                ok = Requirement(f"{CORE_DISTRIBUTION}{info.core_range}").specifier.contains(
                    Version(self.core_version), prereleases=True
                )
            except InvalidVersion:
                ok = True
            if not ok:
                self._infos[plugin_name] = PluginInfo(
                    plugin_name,
                    info,
                    "incompatible",
                    f"supports {CORE_DISTRIBUTION}{info.core_range}, but {self.core_version} is installed",
                )
                return
        try:
            module = ep.load()
        except Exception as exc:
            self._infos[plugin_name] = PluginInfo(plugin_name, info, "error", f"import failed: {exc!r}")
            return
        self.register(module, plugin_name, info)

    def register(self, plugin: object, name: str, distribution: Distribution | None = None) -> PluginInfo:
        """Add ``plugin`` (a module or object with hookimpls) under ``name``.

        A plugin whose hooks do not match the specs, or that names a hook that
        does not exist, is not added; the returned info says why.
        """
        with self._lock:
            try:
                self._pm.register(plugin, name=name)
            except pluggy.PluginValidationError as exc:
                info = PluginInfo(name, distribution, "invalid", str(exc))
            except ValueError as exc:  # already registered
                info = PluginInfo(name, distribution, "invalid", str(exc))
            else:
                try:
                    self._pm.check_pending()
                except pluggy.PluginValidationError as exc:
                    self._pm.unregister(name=name)
                    info = PluginInfo(name, distribution, "invalid", str(exc))
                else:
                    info = PluginInfo(name, distribution, "ok")
            self._infos[name] = info
            self._providers = None
            return info

    def unregister(self, name: str) -> None:
        """Remove a plugin added by :meth:`register` (for tests)."""
        with self._lock:
            if self._pm.has_plugin(name):
                self._pm.unregister(name=name)
            self._infos.pop(name, None)
            self._providers = None

    # -- the name table -------------------------------------------------------------------------

    def _table(self) -> dict[tuple[str, str], list[Provider]]:
        self.load()
        with self._lock:
            if self._providers is not None:
                return self._providers
            table: dict[tuple[str, str], list[Provider]] = {}
            for plugin_name, info in list(self._infos.items()):
                if info.status != "ok":
                    continue
                plugin = self._pm.get_plugin(plugin_name)
                try:
                    found = list(self._collect(plugin_name, plugin, info.distribution))
                except Exception as exc:
                    self._pm.unregister(name=plugin_name)
                    self._infos[plugin_name] = PluginInfo(plugin_name, info.distribution, "error", str(exc))
                    continue
                for provider in found:
                    table.setdefault((provider.interface, provider.name), []).append(provider)
            self._providers = table
            return table

    def _collect(self, plugin_name: str, plugin: object, dist: Distribution | None) -> Iterable[Provider]:
        found: list[Provider] = []
        for kind in _KINDS:
            caller = getattr(self._pm.hook, f"micro_register_{kind}")
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue

                def register(name: str, factory: type | str, /, *, default: bool = False, _kind: str = kind) -> None:
                    if not isinstance(name, str) or not _NAME.match(name):
                        raise ConfigError(f"{plugin_name}: invalid {_kind} name {name!r} (use lower-case a-z0-9._-)")
                    if not isinstance(factory, (type, str)) or (isinstance(factory, str) and ":" not in factory):
                        raise ConfigError(f"{plugin_name}: {_kind} {name!r} factory must be a class or 'module:Class'")
                    found.append(Provider(_kind, name, factory, bool(default), plugin_name, dist))

                impl.function(register=register)
        return found

    def providers(self, interface: str | None = None) -> list[Provider]:
        """Every registration, sorted by interface then name; duplicates included."""
        rows = [p for group in self._table().values() for p in group]
        if interface is not None:
            rows = [p for p in rows if p.interface == interface]
        return sorted(rows, key=lambda p: (_KINDS.index(p.interface), p.name, p.origin))

    def plugins(self) -> list[PluginInfo]:
        """Every plugin found, with its status."""
        self._table()
        return sorted(self._infos.values(), key=lambda i: i.name)

    def names(self, interface: str) -> list[str]:
        return sorted({p.name for p in self.providers(interface)})

    # -- resolving ------------------------------------------------------------------------------

    def resolve(self, interface: str, name: str | None = None, *, source: str | None = None) -> Provider:
        """The provider of ``name`` for ``interface`` (the default one if ``name`` is ``None``).

        Raises :class:`PluginNotFound` listing what is installed, or
        :class:`PluginConflict` naming every distribution that claims the name.
        """
        if interface not in _KINDS:
            raise PluginNotFound(f"unknown interface {interface!r}; interfaces: {', '.join(hookspecs.INTERFACES)}")
        table = self._table()
        if name is None:
            defaults = [p for p in self.providers(interface) if p.default]
            if not defaults:
                raise PluginNotFound(
                    f"no default {interface} is registered; set {_env.variable(interface)} to one of: "
                    f"{self._installed(interface)}"
                )
            if len(defaults) > 1:
                claimants = "; ".join(f"{p.name!r} from {p.origin}" for p in defaults)
                raise PluginConflict(f"several {interface} implementations claim to be the default: {claimants}")
            return defaults[0]
        candidates = table.get((interface, name), [])
        where = f" (from {source})" if source else ""
        if not candidates:
            raise PluginNotFound(
                f"no {interface} named {name!r}{where}. Installed: {self._installed(interface)}{self._not_loaded()}"
            )
        if len(candidates) > 1:
            claimants = " and ".join(p.origin for p in candidates)
            raise PluginConflict(
                f"{interface} {name!r}{where} is registered by more than one distribution: {claimants}; "
                "uninstall one of them"
            )
        return candidates[0]

    def _installed(self, interface: str) -> str:
        rows = self.providers(interface)
        return ", ".join(f"{p.name} ({p.origin})" for p in rows) or "none"

    def _not_loaded(self) -> str:
        skipped = [i for i in self._infos.values() if i.status != "ok"]
        if not skipped:
            return ""
        return ". Not loaded: " + "; ".join(f"{i.distribution or i.name}: {i.status}, {i.reason}" for i in skipped)

    def factory(self, provider: Provider) -> type:
        """The class behind ``provider``, imported on first use."""
        key = (provider.interface, provider.name)
        cls = self._factories.get(key)
        if cls is not None:
            return cls
        factory = provider.factory
        if isinstance(factory, str):
            module_name, _, attr = factory.partition(":")
            try:
                obj: Any = importlib.import_module(module_name)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(
                    f"{provider.interface} {provider.name!r} from {provider.origin} cannot be imported "
                    f"({factory}): {exc}"
                ) from exc
            factory = obj
        if not isinstance(factory, type):
            raise ConfigError(f"{provider.interface} {provider.name!r} from {provider.origin} is not a class")
        self._factories[key] = factory
        return factory

    @overload
    def create(
        self,
        interface: str,
        name: str | None = None,
        /,
        *,
        cls: type[C],
        environ: Mapping[str, str] | None = None,
        options: Options | None = None,
        wiring: Mapping[str, Any] | None = None,
        **values: Any,
    ) -> C: ...

    @overload
    def create(
        self,
        interface: str,
        name: str | None = None,
        /,
        *,
        environ: Mapping[str, str] | None = None,
        options: Options | None = None,
        wiring: Mapping[str, Any] | None = None,
        **values: Any,
    ) -> Component: ...

    def create(
        self,
        interface: str,
        name: str | None = None,
        /,
        *,
        cls: type[Component] | None = None,
        environ: Mapping[str, str] | None = None,
        options: Options | None = None,
        wiring: Mapping[str, Any] | None = None,
        **values: Any,
    ) -> Component:
        """A new, unstarted instance for ``interface``.

        The name is ``name`` if given, else ``MICRO_<INTERFACE>``, else the
        registered default. Options come from ``options`` (a complete options
        object), else from ``MICRO_<INTERFACE>_<OPTION>`` variables overridden by
        ``values``. Variables apply only when they configure the name being
        created: ``MICRO_STORE_TABLE`` is ignored for ``create("store", "memory")``
        while ``MICRO_STORE=redis``. ``cls`` narrows the static return type and
        is checked at run time.

        ``wiring`` hands other building blocks to the constructor by keyword
        (``wiring={"registry": registry}`` for a selector or the http broker).
        Keywords the constructor does not accept, and ``None`` values, are
        dropped, so one wiring mapping serves every implementation of an
        interface (the memory broker needs no registry).
        """
        environ = os.environ if environ is None else environ
        chosen = _env.selection(interface, environ)
        source = None
        if name is None and chosen.name is not None:
            name, source = chosen.name, _env.variable(interface)
        provider = self.resolve(interface, name, source=source)
        factory = self.factory(provider)
        use_env = chosen.name is None or chosen.name == provider.name
        if options is None:
            options_type = getattr(factory, "options_type", None)
            if not (isinstance(options_type, type) and dataclasses.is_dataclass(options_type)):
                raise ConfigError(f"{provider.interface} {provider.name!r} from {provider.origin} has no options_type")
            options = build(
                cast(type[Options], options_type),
                chosen.options if use_env else {},
                values,
                describe=lambda key: _env.variable(interface, key),
            )
        elif values:
            raise TypeError("pass either options= or keyword values, not both")
        try:
            instance = factory(options, **_accepted(factory, wiring))
        except (InvalidOption, MissingExtra):
            raise  # already name what to change: an option, or an extra to install
        except (ValueError, TypeError) as exc:
            raise InvalidOption(
                str(exc), option="?", variable=f"{_env.variable(interface)}_* or the options given"
            ) from exc
        if isinstance(instance, Component):
            instance.name = provider.name
        if cls is not None and not isinstance(instance, cls):
            raise ConfigError(
                f"{interface} {provider.name!r} from {provider.origin} built {type(instance).__name__}, "
                f"not a {cls.__name__}"
            )
        return cast(Component, instance)


def _accepted(factory: type, wiring: Mapping[str, Any] | None) -> dict[str, Any]:
    if not wiring:
        return {}
    given = {key: value for key, value in wiring.items() if value is not None}
    if not given:
        return {}
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return given
    return {key: value for key, value in given.items() if key in parameters}


_manager: PluginManager | None = None
_manager_lock = threading.Lock()


def get_manager() -> PluginManager:
    """The process-wide manager, created on first use."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = PluginManager()
        return _manager


@overload
def create(interface: Literal["auth"], name: str | None = None, /, **kwargs: Any) -> Auth: ...


@overload
def create(interface: Literal["broker"], name: str | None = None, /, **kwargs: Any) -> Broker: ...


@overload
def create(interface: Literal["client"], name: str | None = None, /, **kwargs: Any) -> Client: ...


@overload
def create(interface: Literal["codec"], name: str | None = None, /, **kwargs: Any) -> Codec: ...


@overload
def create(interface: Literal["config"], name: str | None = None, /, **kwargs: Any) -> Source: ...


@overload
def create(interface: Literal["log"], name: str | None = None, /, **kwargs: Any) -> Log: ...


@overload
def create(interface: Literal["network"], name: str | None = None, /, **kwargs: Any) -> Network: ...


@overload
def create(interface: Literal["registry"], name: str | None = None, /, **kwargs: Any) -> Registry: ...


@overload
def create(interface: Literal["runtime"], name: str | None = None, /, **kwargs: Any) -> Runtime: ...


@overload
def create(interface: Literal["selector"], name: str | None = None, /, **kwargs: Any) -> Selector: ...


@overload
def create(interface: Literal["server"], name: str | None = None, /, **kwargs: Any) -> Server: ...


@overload
def create(interface: Literal["stats"], name: str | None = None, /, **kwargs: Any) -> Stats: ...


@overload
def create(interface: Literal["store"], name: str | None = None, /, **kwargs: Any) -> Store: ...


@overload
def create(interface: Literal["sync"], name: str | None = None, /, **kwargs: Any) -> Sync: ...


@overload
def create(interface: Literal["tracer"], name: str | None = None, /, **kwargs: Any) -> Tracer: ...


@overload
def create(interface: Literal["transport"], name: str | None = None, /, **kwargs: Any) -> Transport: ...


@overload
def create(interface: Literal["tunnel"], name: str | None = None, /, **kwargs: Any) -> Tunnel: ...


@overload
def create(interface: str, name: str | None = None, /, **kwargs: Any) -> Component: ...


def create(interface: str, name: str | None = None, /, **kwargs: Any) -> Component:
    """``get_manager().create(...)``: see :meth:`PluginManager.create`.

    The result is typed by interface: ``micro.create("store")`` is a
    :class:`~micro.store.Store`.
    """
    return cast(Component, get_manager().create(interface, name, **kwargs))
