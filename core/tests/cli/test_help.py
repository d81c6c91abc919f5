"""``micro --help`` lists every command as click would, without importing the built-in ones."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import click
import pytest
from micro.cli import COMMANDS, SUMMARIES, main


def _command(target: str) -> click.Command:
    module_name, _, attr = target.partition(":")
    command = getattr(importlib.import_module(module_name), attr)
    assert isinstance(command, click.Command)
    return command


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_summary_is_the_first_paragraph_of_the_command_help(name: str) -> None:
    command = _command(COMMANDS[name])
    assert command.short_help is None  # a short_help would be shown instead; SUMMARIES would have to hold it
    assert command.help is not None
    assert SUMMARIES[name] == command.help.split("\n\n")[0].strip()


def test_every_built_in_command_has_a_summary() -> None:
    assert set(SUMMARIES) == set(COMMANDS)


@pytest.mark.parametrize("width", [40, 80, 120])
def test_commands_section_matches_click_with_the_commands_imported(width: int) -> None:
    ctx = click.Context(main, info_name="micro")
    ours = click.HelpFormatter(width=width)
    main.format_commands(ctx, ours)
    clicks = click.HelpFormatter(width=width)
    click.Group.format_commands(main, ctx, clicks)  # imports every command for its help
    assert ours.getvalue() == clicks.getvalue()
    assert "plugins" in ours.getvalue()


def test_help_imports_no_built_in_command() -> None:
    code = (
        "import json, sys\n"
        "from micro.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(out.stderr))
    assert "Commands:" in out.stdout
    commands = {target.partition(":")[0] for target in COMMANDS.values()}
    assert not commands & loaded
    assert not {"micro.cli._service", "asyncio", "rich", "micro.runtime"} & loaded
