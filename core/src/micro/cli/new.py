"""``micro new <name>``: scaffold a service package that runs, answers ``micro call`` and passes its own tests."""

from __future__ import annotations

import re
from pathlib import Path

import click

__all__ = ["command", "scaffold"]

_NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_.][a-z0-9]+)*")

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"
description = "The {name} service"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["asyncmicro-core>={core}"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-asyncio>=0.23"]

[project.scripts]
{name} = "{package}.main:main"

[tool.setuptools]
packages = ["{package}"]

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
testpaths = ["tests"]
"""

_README = """\
# {name}

A micro service: `{cls}.hello` answers a greeting, `{cls}.count` streams numbers.

```bash
pip install -e '.[test]'        # the service, and pytest for its tests
pytest                          # its tests run the service in memory (micro.testing)
python -m {package} &           # serve it (Ctrl-C or kill %1 to stop)
micro call {name} {cls}.hello '{{"name": "Alice"}}'
micro call --stream {name} {cls}.count '{{"to": 3}}'
```

Configuration comes from `MICRO_*` variables (`MICRO_REGISTRY`, `MICRO_BROKER`, `MICRO_STORE`,
`MICRO_AUTH`...), so the code does not change between a laptop and production. A bad name or option
stops the service at start-up with one line naming the variable (`MICRO_LOG_LEVEL=debug` adds the traceback).

| file | what |
|---|---|
| `{package}/handler.py` | the endpoints |
| `{package}/main.py` | `make_service()` builds the service; `main()` runs it |
| `tests/test_{package}.py` | tests with the `micro_harness` fixture |
"""

_INIT = '''\
"""The {name} service."""

from .handler import {cls}, HelloRequest, HelloResponse
from .main import make_service

__all__ = ["HelloRequest", "HelloResponse", "{cls}", "make_service"]
'''

_HANDLER = '''\
"""The endpoints of {name}: each public async method is one, ``{cls}.<method>``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from micro.errors import BadRequest


@dataclass
class HelloRequest:
    name: str


@dataclass
class HelloResponse:
    message: str


class {cls}:
    async def hello(self, req: HelloRequest) -> HelloResponse:
        """Greet ``req.name``; an empty name is a 400."""
        if not req.name:
            raise BadRequest("name must not be empty")
        return HelloResponse(message=f"Hello {{req.name}}")

    async def count(self, req: dict[str, int]) -> AsyncIterator[int]:
        """Stream 0, 1, ... up to ``req["to"]`` (at most 1000)."""
        to = req.get("to", 0)
        if not isinstance(to, int) or not 0 <= to <= 1000:
            raise BadRequest("to must be an integer from 0 to 1000")
        for n in range(to):
            yield n
'''

_MAIN = '''\
"""Build and run {name}: ``python -m {package}``."""

from __future__ import annotations

from typing import Any

import micro
from micro.service import serve

from .handler import {cls}

NAME = "{name}"


def make_service(**options: Any) -> micro.Service:
    """The service; ``options`` go to :class:`micro.Service` (tests pass the harness's wiring)."""
    service = micro.Service(NAME, **options)
    service.handle({cls}())
    return service


def main() -> None:
    serve(make_service)
'''

_DUNDER_MAIN = """\
from .main import main

main()
"""

_TEST = '''\
"""{name}'s tests: the service runs in memory, called through a real client (see micro.testing)."""

import pytest
from micro.errors import BadRequest

from {package} import HelloRequest, make_service


@pytest.fixture
async def service(micro_harness):
    micro_harness.add(make_service(**micro_harness.wiring()))
    await micro_harness.start()
    return micro_harness


async def test_hello(service):
    reply = await service.call("{name}", "{cls}.hello", HelloRequest(name="Alice"))
    assert reply == {{"message": "Hello Alice"}}


async def test_an_empty_name_is_a_bad_request(service):
    with pytest.raises(BadRequest):
        await service.call("{name}", "{cls}.hello", HelloRequest(name=""))


async def test_count_streams(service):
    stream = await service.client.stream("{name}", "{cls}.count", {{"to": 3}})
    async with stream:
        await stream.close_send()
        assert [n async for n in stream] == [0, 1, 2]
'''


def scaffold(name: str, directory: Path) -> list[Path]:
    """Write the package for service ``name`` into ``directory`` (which must not exist); returns the files.

    :raises click.BadParameter: a name that is not lower-case letters, digits and ``-``, ``_``, ``.``.
    :raises click.ClickException: ``directory`` exists.
    """
    if not _NAME.fullmatch(name):
        raise click.BadParameter(
            f"{name!r}: use lower-case letters and digits, separated by '-', '_' or '.' (greeter, order-history)",
            param_hint="NAME",
        )
    if directory.exists():
        raise click.ClickException(f"{directory} already exists; choose another name or --directory")
    from .._version import __version__

    package = re.sub(r"[-.]", "_", name)
    cls = "".join(part.capitalize() for part in re.split(r"[-_.]", name))
    values = {"name": name, "package": package, "cls": cls, "core": __version__}
    files = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README,
        f"{package}/__init__.py": _INIT,
        f"{package}/__main__.py": _DUNDER_MAIN,
        f"{package}/handler.py": _HANDLER,
        f"{package}/main.py": _MAIN,
        f"tests/test_{package}.py": _TEST,
    }
    written: list[Path] = []
    for relative, template in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values))
        written.append(path)
    return written


@click.command("new")
@click.argument("name")
@click.option(
    "--directory",
    "-d",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to create it (default: ./NAME).",
)
def command(name: str, directory: Path | None) -> None:
    """Create a service package NAME: handler, tests, pyproject and README.

    The package runs (python -m NAME), answers `micro call`, and passes its own
    tests (pytest) as created.
    """
    target = directory if directory is not None else Path(name)
    files = scaffold(name, target)
    for path in files:
        click.echo(f"created {path}")
    click.echo(
        f"\nnext:\n  cd {target}\n  pip install -e '.[test]'\n  pytest\n  python -m {files[2].parent.name}", err=True
    )
