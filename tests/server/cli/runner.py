"""Running the `keyturn` command in-process for the tests: a production-mode invoker on a temp
directory, the command tree, and the service the CLI runs (to make traffic the CLI then shows)."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click
import pytest
from click.testing import CliRunner

from keyturn.server.cli import app
from keyturn.server.config import load_settings
from keyturn.server.service import Service, run_with

PASSWORD = "correct horse battery staple"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
T = TypeVar("T")


class Cli:
    """Invokes the CLI in production mode against a database in a temp directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.env = {
            "KEYTURN_SECRET": secrets.token_urlsafe(48),
            "KEYTURN_ISSUER": "https://auth.keyturn.test",  # required outside development
            "KEYTURN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        }
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, code: int = 0) -> str:
        result = self.runner.invoke(app, list(args), env=self.env, input=input)
        assert result.exit_code == code, (result.output, result.exception)
        return result.output


def with_service(run: Cli, monkeypatch: pytest.MonkeyPatch, work: Callable[[Service], Awaitable[T]]) -> T:
    """Run ``work`` on a Service built from the same environment as the CLI (wall-clock time)."""
    for name, value in run.env.items():
        monkeypatch.setenv(name, value)

    return asyncio.run(run_with(load_settings(), work))


def user_id(out: str) -> str:
    """The id in ``users add``'s answer, ``created alice (<uuid>)``."""
    found = re.search(rf"\(({UUID})\)", out)
    assert found, out
    return found.group(1)


def commands(group: click.Group = app, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every group and command under ``group``, itself first."""
    found = [path]
    for name, command in group.commands.items():
        found += commands(command, (*path, name)) if isinstance(command, click.Group) else [(*path, name)]
    return found


def command_at(path: tuple[str, ...]) -> click.Command:
    """The command (or group) at ``path``."""
    command: click.Command = app
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(click.Context(command), name)
        assert found is not None
        command = found
    return command
