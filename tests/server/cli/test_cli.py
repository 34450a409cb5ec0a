"""Tests of the `keyturn` command tree (``keyturn.server.cli``), in-process, with no I/O: the help of
every command and group, and that the commands go through the service."""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import keyturn.server.cli
from keyturn.server.cli import app
from tests.server.cli.runner import command_at, commands

# --- help ------------------------------------------------------------------------------------------


def continues(before: str, line: str, in_section: bool) -> bool:
    """Whether ``line`` carries on the paragraph (or the help cell) of ``before``."""
    if not before.strip() or not line.strip():
        return False
    indent = len(line) - len(line.lstrip())
    return indent > 2 if in_section else indent == 2


@pytest.mark.parametrize("columns", [60, 100])
@pytest.mark.parametrize("path", commands(), ids=lambda path: " ".join(path) or "keyturn")
def test_help_is_clean(path: tuple[str, ...], columns: int) -> None:
    """`--help` of every command and group: a usage line in plain metavars (`USERNAME`, not
    `{username}`), no type labels (`<bool>`, `<str>`), and every paragraph wrapped whole: no line
    ends before the terminal's width makes it (a docstring's own line breaks do not show)."""
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=columns)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    usage_tail = r"( [A-Z_]+)*" if not isinstance(command_at(path), click.Group) else r" COMMAND \[ARGS\]\.\.\."
    assert re.fullmatch(rf"Usage: keyturn{''.join(' ' + p for p in path)} \[OPTIONS\]{usage_tail}", lines[0])
    assert not re.search(r"<[a-z ]+>|\{\w+\}", result.output)
    width = columns  # given a terminal width, Click wraps to exactly it
    in_section = False
    for before, line in itertools.pairwise(lines):
        in_section = in_section or (line.endswith(":") and not line.startswith(" "))
        assert len(line) <= width, line
        if continues(before, line, in_section):
            assert len(before) + 1 + len(line.split()[0]) > width, f"broken early:\n{before}\n{line}"


def test_the_command_lists_show_whole_sentences() -> None:
    """At 80 columns, no command's one-line summary is cut short with "..."."""
    for path in commands():
        if isinstance(command_at(path), click.Group):
            out = CliRunner().invoke(app, [*path, "--help"], terminal_width=80).output
            listing = out.split("Commands:\n", 1)[1].splitlines()
            assert [line for line in listing if line.endswith("...")] == [], path


# --- boundaries ------------------------------------------------------------------------------------

CLI = Path(keyturn.server.cli.__file__).parent


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.name)
def test_the_cli_does_not_reach_behind_the_service(path: Path) -> None:
    """The CLI calls the service's methods (``svc.migrate()``), never what the service is built on
    (``svc.store.db.migrate()``). What it may import is pinned with the other layers in
    tests/test_layers.py."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    reached = [f"{node.attr}:{node.lineno}" for node in ast.walk(tree) if isinstance(node, ast.Attribute)]
    assert [found for found in reached if found.split(":")[0] in ("store", "db", "ctx")] == []
