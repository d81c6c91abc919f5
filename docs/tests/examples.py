"""Finding the Python examples in the documentation, and running one as a reader would.

Every fenced ``python`` block in ``docs/*.md`` and the README runs, unless the line right above its fence
is ``<!-- not run: <why> -->`` (a fragment, a signature, a file of a plugin that is not installed).
``<!-- run: serves the next example -->`` marks a server: it is started, the next block runs against
it (retried while the server comes up), then it gets SIGINT and must exit cleanly. A block whose
first line is ``# <name>.py`` is saved under that name, so that the next block can import it.
A block followed by a line ``Prints:`` and a fenced ``text`` block must print exactly that text.
Top-level ``await`` and ``async with`` are allowed, as in ``python -m asyncio``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
_BLOCK = re.compile(
    r"(?:^<!-- (?:not run: (?P<why>[^\n]*?)|run: (?P<serves>serves the next example)) -->\n)?"
    r"^```python\n(?P<code>.*?)^```\n"
    r"(?:\n?Prints:\n\n?```text\n(?P<prints>.*?)^```\n)?",
    re.MULTILINE | re.DOTALL,
)

#: Runs one example: top-level await allowed; plain code (``Service.run_forever``) runs outside a loop.
RUNNER = """
import ast, asyncio, inspect, sys
path = sys.argv[1]
code = compile(open(path).read(), path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
namespace = {"__name__": "__main__"}
if code.co_flags & inspect.CO_COROUTINE:
    async def main():
        await eval(code, namespace)
    asyncio.run(main())
else:
    exec(code, namespace)
"""


@dataclass(frozen=True)
class Example:
    page: str
    number: int
    code: str
    not_run: str | None
    prints: str | None
    serves: bool = False
    #: The example that serves this one (the block before it, marked ``serves the next example``).
    server: Example | None = None

    @property
    def filename(self) -> str:
        first = self.code.split("\n", 1)[0]
        match = re.fullmatch(r"# (\w+\.py)", first)
        return match[1] if match else "example.py"

    @property
    def id(self) -> str:
        return f"{self.page}#{self.number}"


def examples() -> list[Example]:
    found: list[Example] = []
    for page in PAGES:
        text = page.read_text()
        previous: Example | None = None
        for number, match in enumerate(_BLOCK.finditer(text)):
            example = Example(
                page=str(page.relative_to(ROOT)),
                number=number,
                code=match["code"],
                not_run=match["why"],
                prints=match["prints"],
                serves=match["serves"] is not None,
                server=previous if previous is not None and previous.serves else None,
            )
            found.append(example)
            previous = example
    return found
