"""Tests of what every `keyturn` command shares (``_invocation``): a missing or bad setting stops it
with one line naming the setting and, when the secret or the issuer is simply not set, a second
saying what to set or how to use --dev. In-process unit tests, except where noted (a real SQLite
file in a temp directory)."""

from __future__ import annotations

import secrets
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from keyturn.server.cli import app
from tests.server.cli.runner import command_at, commands

# Every command that reads the settings, with arguments that would let it run.
NEEDS_SETTINGS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("serve",): ("--port", "1"),
    ("migrate",): (),
    ("prune",): (),
    ("audit",): ("--limit", "5"),
    ("users", "add"): ("alice",),  # asks for the password only once the settings are known good
    ("users", "list"): (),
    ("users", "grant"): ("alice", "admin"),
    ("users", "revoke"): ("alice", "admin"),
    ("users", "disable"): ("alice",),
    ("users", "enable"): ("alice",),
    ("users", "set-email"): ("alice", "alice@example.com"),
    ("users", "set-password"): ("alice",),  # asks for the password only once the settings are known good
    ("keys", "list"): (),
    ("keys", "rotate"): ("--delay", "0"),
    ("sessions", "list"): (),
    ("sessions", "revoke"): ("00000000-0000-0000-0000-000000000000",),
    ("token", "inspect"): ("eyJhbGciOiJFUzI1NiJ9.e30.c2ln",),
    ("clients", "add"): ("billing-cron",),
    ("clients", "list"): (),
    ("clients", "rotate-secret"): ("billing-cron",),
    ("clients", "disable"): ("billing-cron",),
    ("clients", "enable"): ("billing-cron",),
}
NEEDS_NO_SETTINGS = {("secret",)}


LEAVES = [path for path in commands() if not isinstance(command_at(path), click.Group)]


def lines_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.fixture
def empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None) -> Path:
    """An empty working directory and no KEYTURN_* settings at all: a newcomer's first try."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_command_is_classified() -> None:
    """A new command is added to NEEDS_SETTINGS (or NEEDS_NO_SETTINGS), so the tests below see it."""
    assert set(LEAVES) == set(NEEDS_SETTINGS) | NEEDS_NO_SETTINGS


def test_bad_setting_stops_with_one_line_naming_it(empty_dir: Path) -> None:
    """A bad value stops start-up with exit 2 and one line naming the setting."""
    result = CliRunner().invoke(
        app, ["users", "list"], env={"KEYTURN_SECRET": secrets.token_urlsafe(48), "KEYTURN_ACCESS_TOKEN_TTL": "soon"}
    )
    assert result.exit_code == 2
    lines = lines_of(result.output)
    assert len(lines) == 1
    assert lines[0].startswith("keyturn: invalid setting KEYTURN_ACCESS_TOKEN_TTL")


@pytest.mark.parametrize("path", list(NEEDS_SETTINGS), ids=" ".join)
def test_a_missing_secret_says_what_to_set_or_how_to_use_dev(path: tuple[str, ...], empty_dir: Path) -> None:
    """Outside --dev with nothing set, every command that needs settings stops with exit 2 and two
    lines: the setting refused, then what to set and the same command with --dev (its arguments
    elided: a token is a secret). Nothing is written."""
    result = CliRunner().invoke(app, [*path, *NEEDS_SETTINGS[path]])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    dev = " ".join(["keyturn --dev", *path, *(["..."] if command_at(path).params else [])])
    assert lines_of(result.output) == [
        "keyturn: invalid setting KEYTURN_SECRET: is required outside development mode",
        "Set KEYTURN_SECRET (make one with `keyturn secret`) and KEYTURN_ISSUER (its public https:// URL), "
        f"or put --dev before the command for local development: {dev}",
    ]
    assert list(empty_dir.iterdir()) == []


def test_a_missing_issuer_alone_says_to_set_it(empty_dir: Path) -> None:
    """With the secret set, the second line names only the issuer."""
    result = CliRunner().invoke(app, ["token", "inspect", "-"], env={"KEYTURN_SECRET": secrets.token_urlsafe(48)})
    assert result.exit_code == 2
    assert lines_of(result.output)[1] == (
        "Set KEYTURN_ISSUER (its public https:// URL), or put --dev before the command for local development: "
        "keyturn --dev token inspect ..."
    )


def test_a_weak_secret_gets_no_hint(empty_dir: Path) -> None:
    """A secret that is set but weak is one line: its own message says how to make a good one."""
    result = CliRunner().invoke(app, ["users", "list"], env={"KEYTURN_SECRET": "short"})
    assert result.exit_code == 2
    assert lines_of(result.output) == [
        "keyturn: invalid setting KEYTURN_SECRET: must be at least 32 characters (use `keyturn secret`)"
    ]


def test_the_hinted_dev_command_works(empty_dir: Path) -> None:
    """Integration (a real SQLite file): the command the hint suggests runs, with a development secret."""
    result = CliRunner().invoke(app, ["--dev", "users", "list"])
    assert result.exit_code == 0, result.output
    assert (empty_dir / "keyturn.secret").exists()
