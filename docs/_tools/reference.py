"""The configuration reference: every ``MICRO_*`` variable, generated from the options classes.

``python docs/_tools/reference.py > docs/reference.md`` writes the page (a test fails when the committed
page differs from what the code would generate). Nothing here is hand-written per variable: a field added
to an options class appears with its type, default and the ``#:`` comment above it.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import textwrap
from collections.abc import Iterator
from typing import Any

HEADER = """# Configuration reference

Every `MICRO_*` variable that the core and the plugins in this repository read, generated from their
options classes (`python docs/_tools/reference.py > docs/reference.md`; a test keeps it current). A value
is read once, when the component is created; `MICRO_<INTERFACE>` picks the implementation by name and
`MICRO_<INTERFACE>_<OPTION>` sets one of its options (durations take `5s`, `250ms`; lists are
comma-separated; booleans take `1/0`, `true/false`, `yes/no`, `on/off`). A variable that the selected
implementation does not know is an error at start-up, naming it ([plugins.md](plugins.md)).
"""


def _field_docs(cls: type) -> dict[str, str]:
    """The ``#:`` comment above each annotated field of ``cls`` and its bases (nearest class wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        tree = ast.parse(source)
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node in body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                comment: list[str] = []
                row = node.lineno - 2
                while row >= 0 and lines[row].strip().startswith("#:"):
                    comment.insert(0, lines[row].strip()[2:].strip())
                    row -= 1
                if comment:
                    docs[node.target.id] = " ".join(comment)
    return docs


def _type_name(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
    return text.replace("typing.", "").replace("|", "\\|")


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if isinstance(value, tuple):
        return f"`{','.join(map(str, value))}`" if value else "(empty)"
    if value is None:
        return "(unset)"
    if value == "":
        return "(empty)"
    if isinstance(value, bool):
        return "`1`" if value else "`0`"
    return f"`{value}`"


_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]+\.)?([^`<]+?)(?: <[^>]+>)?`")


def _cell(text: str) -> str:
    """Docstring reST (roles, double back-quotes) as Markdown, on one table row."""
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", text).replace("``", "`")
    return text.replace("|", "\\|").replace("\n", " ")


def _options_rows(prefix: str, options_type: type) -> Iterator[str]:
    docs = _field_docs(options_type)
    for field in dataclasses.fields(options_type):
        if not field.init or field.name.startswith("_"):
            continue
        variable = f"{prefix}_{field.name.upper()}"
        yield f"| `{variable}` | {_type_name(field.type)} | {_default(field)} | {_cell(docs.get(field.name, ''))} |"


def _command_options(manager: Any) -> Iterator[tuple[str, type]]:
    """``(command, options class)`` for each plugin command whose package's ``options`` module declares
    an options class with a ``variable_prefix`` (``WebOptions.variable_prefix == "MICRO_WEB"``)."""

    from micro.options import Options

    for provider in manager.providers("command"):
        factory = provider.factory if isinstance(provider.factory, str) else provider.factory.__module__
        package = factory.split(":")[0].split(".")[0]
        try:
            module = importlib.import_module(f"{package}.options")
        except ImportError:
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Options)
                and value.__module__ == module.__name__
                and isinstance(getattr(value, "variable_prefix", None), str)
            ):
                yield provider.name, value


def render() -> str:
    """The whole page, for the plugins installed in this interpreter."""
    from micro import _env, hookspecs
    from micro.debug.access import DebugOptions
    from micro.plugins import get_manager
    from micro.service import _SERVICE_VARIABLES, ServiceOptions

    manager = get_manager()
    out = [HEADER]
    out += ["## The service", "", "| variable | type | default | meaning |", "|---|---|---|---|"]
    docs = _field_docs(ServiceOptions)
    for field in dataclasses.fields(ServiceOptions):
        variable = _SERVICE_VARIABLES[field.name]
        meaning = _cell(docs.get(field.name, ""))
        out.append(f"| `{variable}` | {_type_name(field.type)} | {_default(field)} | {meaning} |")
    out += ["", "## Debug endpoints", "", "Who may call `Debug.logs|trace|stats` ([debug.md](debug.md)).", ""]
    out += ["| variable | type | default | meaning |", "|---|---|---|---|"]
    out += list(_options_rows(_env.variable("debug"), DebugOptions))
    out.append("")
    out += [
        "## The `micro` command",
        "",
        "Read by the command only, never by a service ([auth.md](auth.md#micro-auth)).",
        "",
    ]
    out += ["| variable | type | default | meaning |", "|---|---|---|---|"]
    out.append(
        "| `MICRO_TOKEN` | str | unset | The access token `micro call` and `micro debug` send (as `--token`); "
        "unset, they sign in with `MICRO_AUTH_ID`/`MICRO_AUTH_SECRET` when `MICRO_AUTH` is set. |"
    )
    out.append("")
    for command, options_type in _command_options(manager):
        prefix = options_type.variable_prefix  # type: ignore[attr-defined]
        summary = _cell((inspect.getdoc(options_type) or "").split("\n\n")[0])
        out += [f"## `micro {command}`", "", f"{summary} Its variables start with `{prefix}`.".strip(), ""]
        out += ["| variable | type | default | meaning |", "|---|---|---|---|"]
        out += list(_options_rows(prefix, options_type))
        out.append("")
    for interface in hookspecs.INTERFACES:
        providers = manager.providers(interface)
        if not providers:
            continue
        selector = _env.variable(interface)
        default = next((p.name for p in providers if p.default), None)
        names = ", ".join(f"`{p.name}` ({p.origin})" for p in providers)
        out += [f"## {interface}", "", f"`{selector}` picks one of: {names}."]
        if default:
            out.append(f"Unset, it is `{default}`.")
        out.append("")
        for provider in providers:
            try:
                cls = manager.factory(provider)
            except Exception as exc:  # a plugin that cannot import is reported, not hidden
                out += [f"### {interface} `{provider.name}`", "", f"Cannot be imported here: {exc}", ""]
                continue
            options_type = getattr(cls, "options_type", None)
            out += [f"### {interface} `{provider.name}`", ""]
            summary = _cell((inspect.getdoc(options_type) or "").split("\n\n")[0]) if options_type else ""
            if summary:
                out += [summary, ""]
            if options_type is None or not dataclasses.is_dataclass(options_type):
                out += ["No options.", ""]
                continue
            out += ["| variable | type | default | meaning |", "|---|---|---|---|"]
            out += list(_options_rows(selector, options_type))
            out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
