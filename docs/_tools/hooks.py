"""mkdocs hooks: the pages that live outside ``docs/``.

* ``plugins/<name>.md``: each plugin's own README (``plugins/<name>/README.md``), so that the links the
  pages make to a plugin's README (``../plugins/<name>/README.md``, right when reading the repository)
  lead to a page of the site too. Links are rewritten only in the site's copy; the files are untouched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[2]
#: ``../plugins/<name>/README.md`` (from a page in docs/) -> ``plugins/<name>.md``.
_TO_PLUGIN = re.compile(r"\]\(\.\./plugins/([a-z0-9_-]+)/README\.md(#[^)]*)?\)")
#: ``../../docs/<page>`` and ``../../README.md`` (from a plugin README) -> the site's page.
_FROM_PLUGIN_DOCS = re.compile(r"\]\(\.\./\.\./docs/([^)]+)\)")
_FROM_PLUGIN_README = re.compile(r"\]\(\.\./\.\./README\.md(#[^)]*)?\)")


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    for readme in sorted(ROOT.glob("plugins/*/README.md")):
        name = readme.parent.name
        files.append(File.generated(config, f"plugins/{name}.md", content=readme.read_text()))
    return files


def on_page_markdown(markdown: str, page: Page, **_: Any) -> str:
    if page.file.src_uri.startswith("plugins/"):
        markdown = _FROM_PLUGIN_DOCS.sub(r"](../\1)", markdown)
        return _FROM_PLUGIN_README.sub(r"](../index.md\1)", markdown)
    return _TO_PLUGIN.sub(lambda m: f"](plugins/{m.group(1)}.md{m.group(2) or ''})", markdown)
