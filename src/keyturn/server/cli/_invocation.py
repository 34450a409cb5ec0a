"""What every ``keyturn`` command shares: the settings (with what to set when they are missing), one
run of the service, and the one-line failures.

Failures are one or two lines on stderr and an exit code, never a traceback: 2 for a mistake in how
the command was called or configured, 1 for a refusal or an unusable database.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, TypeVar

import click

from ...core.errors import ConfigurationError, KeyturnError
from ..config import Settings, load_settings
from ..service import Service, run_with

T = TypeVar("T")

# The settings a production deployment must be given, and how to say what to give them.
_REQUIRED = {
    "KEYTURN_SECRET": "KEYTURN_SECRET (make one with `keyturn secret`)",
    "KEYTURN_ISSUER": "KEYTURN_ISSUER (its public https:// URL)",
}


class Commands(click.Group):
    """A group that lists its commands in the order they were added (``serve`` first, ``add``
    before ``list``), not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@dataclass(frozen=True)
class Invocation:
    """The options given before the command (``keyturn --dev users list``), for the command to read."""

    dev: bool = False


def fail(message: str, code: int = 1) -> NoReturn:
    """Stop with ``keyturn: <message>`` on stderr and exit ``code``."""
    click.echo(f"keyturn: {message}", err=True)
    raise click.exceptions.Exit(code)


def settings(dev_issuer: str | None = None) -> Settings:
    """This deployment's settings; a missing or invalid one stops the command with exit 2, naming it.

    When the secret or the issuer is simply not set (a newcomer's first try), a second line says
    what to set, and how to run the same command in development mode instead.
    """
    ctx = click.get_current_context()
    dev = ctx.ensure_object(Invocation).dev
    try:
        return load_settings(dev=dev, dev_issuer=dev_issuer)
    except ConfigurationError as exc:
        click.echo(f"keyturn: invalid setting {exc.description}", err=True)
        missing = [name for name in _REQUIRED if not os.environ.get(name)]
        if not dev and exc.setting in missing:
            wanted = " and ".join(_REQUIRED[name] for name in missing)
            click.echo(f"Set {wanted}, or put --dev before the command for local development: {_in_dev(ctx)}", err=True)
        raise click.exceptions.Exit(2) from None


def _in_dev(ctx: click.Context) -> str:
    """The command being run, as ``keyturn --dev <command>`` (its arguments elided: they may be secret)."""
    root, *words = ctx.command_path.split()
    return " ".join([root, "--dev", *words, *(["..."] if ctx.command.params else [])])


def run(work: Callable[[Service], Awaitable[T]], config: Settings | None = None) -> T:
    """Start the service on the settings (migrating if enabled), run ``work``, close it; a keyturn
    error (a refusal, an unusable database) becomes one line and exit 1."""
    return run_service(run_with(config or settings(), work))


def run_service(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to completion; a keyturn error becomes one line and exit 1."""
    try:
        return asyncio.run(work)
    except KeyturnError as exc:
        fail(exc.description)


def when(at: datetime | None) -> str:
    """A time as the listings show it: UTC to the second, or ``-``."""
    return at.strftime("%Y-%m-%d %H:%M:%SZ") if at else "-"
