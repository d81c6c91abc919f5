"""The layering of the core, read from the source with ``ast`` (so it holds for lazy and type-only imports too).

Blocks (``micro.store``, ``micro.client``...) depend only on each other and on the shared base modules; the
plugin manager, the service and the CLI sit above them and wire them. A block never reaches up: not to
``micro.plugins`` (``create``, ``get_manager``), nor to the service, the CLI or ``micro`` itself. And no two
parts import each other, directly or around a circle. See ``docs/design.md``, "Wiring".
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import micro
import pytest

ROOT = Path(micro.__file__).parent

#: The building blocks: each package's modules may import only blocks and the shared base modules.
BLOCKS = frozenset(
    {
        "auth",
        "broker",
        "client",
        "codec",
        "config",
        "debug",
        "network",
        "registry",
        "runtime",
        "selector",
        "server",
        "store",
        "sync",
        "transport",
        "tunnel",
    }
)
#: The layers above the blocks: they wire blocks together, so nothing in a block may import them.
WIRING = frozenset(
    {"micro", "micro.plugins", "micro.interfaces", "micro.service", "micro.defaults", "micro.cli", "micro.__main__"}
)


def _modules(root: Path) -> dict[str, Path]:
    """The modules of the package at ``root`` (its directory), by dotted name."""

    def name(path: Path) -> str:
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        return ".".join(parts)

    return {name(path): path for path in sorted(root.rglob("*.py"))}


MODULES = _modules(ROOT)
#: The plugins' packages, when the tests run in the monorepo (``plugins/<name>/src/<package>``).
PLUGINS = sorted(p for p in (ROOT.parents[2] / "plugins").glob("*/src/*") if (p / "__init__.py").exists())


def _imports(module: str, modules: dict[str, Path] = MODULES) -> list[tuple[str, set[str], int]]:
    """(the module imported, the names taken from it, line) for every import in ``module``, at any depth.

    Only imports of the package ``modules`` belong to (``micro`` by default) are kept.
    """
    top = next(iter(modules)).split(".")[0]
    path = modules[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, set[str], int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, set(), node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = {alias.name for alias in node.names}
            # `from .. import _env` imports the module micro._env; what else is named comes from `target` itself.
            submodules = {n for n in names if f"{target}.{n}" in modules}
            found.extend((f"{target}.{n}", set(), node.lineno) for n in sorted(submodules))
            if names - submodules:
                found.append((target, names - submodules, node.lineno))
    return [(target, names, line) for target, names, line in found if target.split(".")[0] == top]


def _unit(module: str) -> str:
    """The part a module belongs to: its block package, or the top-level module itself."""
    return ".".join(module.split(".")[:2])


def _is_block(module: str) -> bool:
    parts = module.split(".")
    return len(parts) > 1 and parts[1] in BLOCKS


def _reaches_up(target: str, names: set[str]) -> bool:
    if any(target == upper or target.startswith(upper + ".") for upper in WIRING - {"micro"}):
        return True
    return target == "micro" and bool(names - {"Metadata", "__version__"} or not names)


def test_the_checker_sees_what_it_is_looking_for() -> None:
    # The analysis must find the wiring's own imports, or every assertion below would pass vacuously.
    assert ("micro.plugins", {"PluginManager", "get_manager"}) in [(t, n) for t, n, _ in _imports("micro.service")]
    assert _reaches_up("micro.plugins", {"create"})
    assert _reaches_up("micro", {"create"})
    assert not _reaches_up("micro.registry.base", {"Registry"})
    assert len([m for m in MODULES if _is_block(m)]) > 60


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _is_block(m)))
def test_no_block_reaches_up_into_the_wiring(module: str) -> None:
    wrong = [
        f"line {line}: {target} {sorted(names)}"
        for target, names, line in _imports(module)
        if _reaches_up(target, names)
    ]
    assert not wrong, f"{module} imports the layer above the blocks: {wrong}"
    source = MODULES[module].read_text()
    assert "get_manager" not in source, f"{module} names get_manager"


def test_no_two_parts_import_each_other_even_around_a_circle() -> None:
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        for target, _, _ in _imports(module):
            target = target if target in MODULES else target.rpartition(".")[0]
            if target in MODULES and _unit(target) != _unit(module):
                graph.setdefault(_unit(module), set()).add(_unit(target))
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle between parts of micro: {' -> '.join(exc.args[1])}")


def _module_cycle(modules: dict[str, Path]) -> list[str] | None:
    """A loop of imports between two or more modules of ``modules`` (lazy and type-only ones count), or ``None``."""
    graph: dict[str, set[str]] = {}
    for module in modules:
        for target, _, _ in _imports(module, modules):
            target = target if target in modules else target.rpartition(".")[0]
            # A package's __init__ only hands names on; importing a sibling through it is not a loop of files.
            if target in modules and target != module and modules[target].name != "__init__.py":
                graph.setdefault(module, set()).add(target)
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_no_two_modules_import_each_other_even_inside_a_block() -> None:
    """Files too: a block's interface and its helpers form no loop (a lazy or type-only import counts)."""
    cycle = _module_cycle(MODULES)
    assert cycle is None, f"import cycle between modules of micro: {' -> '.join(cycle or [])}"


@pytest.mark.skipif(not PLUGINS, reason="not in the monorepo: no plugins/ beside the core")
@pytest.mark.parametrize("package", PLUGINS, ids=lambda p: p.name)
def test_no_two_modules_of_a_plugin_import_each_other(package: Path) -> None:
    """The same for every plugin's package (a registry and its watch helper, a type-only import included)."""
    cycle = _module_cycle(_modules(package))
    assert cycle is None, f"import cycle between modules of {package.name}: {' -> '.join(cycle or [])}"


def test_the_cycle_finder_sees_a_type_only_loop(tmp_path: Path) -> None:
    package = tmp_path / "loop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import B\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\n")
    assert sorted(set(_module_cycle(_modules(package)) or [])) == ["loop.a", "loop.b"]
