"""Integration tests of the `keyturn` command line, in-process, on a real SQLite file in a temp directory."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyturn.cli import app

PASSWORD = "correct horse battery staple"


class Cli:
    """Invokes the CLI in production mode against a database in a temp directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.env = {
            "KEYTURN_SECRET": secrets.token_urlsafe(48),
            "KEYTURN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        }
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, code: int = 0) -> str:
        result = self.runner.invoke(app, list(args), env=self.env, input=input)
        assert result.exit_code == code, (result.output, result.exception)
        return result.output


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None) -> Cli:
    monkeypatch.chdir(tmp_path)
    return Cli(tmp_path)


def test_users_add_list_disable(run: Cli) -> None:
    """An operator creates, lists and disables an account; disabling ends its sessions."""
    assert "created alice" in run("users", "add", "alice", "--password-stdin", input=PASSWORD + "\n")
    listed = run("users", "list")
    assert "alice" in listed
    assert "active" in listed
    assert "disabled alice" in run("users", "disable", "alice")
    assert "disabled" in run("users", "list")


def test_users_add_refuses_a_short_password(run: Cli) -> None:
    """The password policy applies to the CLI too, with one clear line and exit 1."""
    out = run("users", "add", "bob", "--password-stdin", input="short\n", code=1)
    assert "at least 8" in out


def test_keys_list_and_rotate(run: Cli) -> None:
    """A rotated key is published at once and signs after the delay; with no delay it signs now."""
    first = run("keys", "list")
    assert first.count("signing") == 1
    out = run("keys", "rotate", "--delay", "0")
    new_kid = re.search(r"new key (\S+)", out)
    assert new_kid
    listed = run("keys", "list")
    signing = [line for line in listed.splitlines() if "signing" in line]
    assert len(signing) == 1
    assert signing[0].startswith(new_kid.group(1))
    assert "published" in listed


def test_keys_rotate_with_delay_keeps_the_old_signer(run: Cli) -> None:
    """With a delay, the old key keeps signing while the new one is only published."""
    old = run("keys", "list").split()[0]
    run("keys", "rotate", "--delay", "10m")
    signing = [line for line in run("keys", "list").splitlines() if "signing" in line]
    assert signing[0].startswith(old)


def test_token_inspect_valid_and_invalid(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """`token inspect` decodes and verifies against the deployment's keys."""
    import asyncio

    from keyturn.config import load_settings
    from keyturn.service import Client, Service

    run("users", "add", "carol", "--password-stdin", input=PASSWORD + "\n")

    async def login() -> str:
        svc = Service(load_settings())
        try:
            await svc.start()
            return (await svc.auth.login("carol", PASSWORD, Client())).access_token
        finally:
            await svc.close()

    for name, value in run.env.items():
        monkeypatch.setenv(name, value)
    token = asyncio.run(login())
    out = run("token", "inspect", token)
    assert "VALID" in out
    assert '"typ": "at+jwt"' in out
    bad = run("token", "inspect", token[:-4] + "AAAA", code=1)
    assert "INVALID: bad_signature" in bad


def test_sessions_list_and_revoke(run: Cli) -> None:
    """Sessions show up in the listing and can be revoked by id; an unknown id is one clear error."""
    assert run("sessions", "list") == ""
    out = run("sessions", "revoke", "00000000-0000-0000-0000-000000000000", code=1)
    assert "No live session" in out


def test_migrate(run: Cli) -> None:
    """`migrate` applies the schema and can run again."""
    assert "migrations applied" in run("migrate")
    assert "migrations applied" in run("migrate")


def test_secret_prints_a_strong_secret(run: Cli) -> None:
    """`keyturn secret` prints a value the production settings accept."""
    from keyturn.config import secret_weakness

    value = run("secret").strip()
    assert secret_weakness(value) is None


def test_bad_setting_stops_with_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    """A bad value stops start-up with exit 2 and one line naming the setting."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["users", "list"], env={"KEYTURN_SECRET": secrets.token_urlsafe(48), "KEYTURN_ACCESS_TOKEN_TTL": "soon"}
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line]
    assert len(lines) == 1
    assert lines[0].startswith("keyturn: invalid setting KEYTURN_ACCESS_TOKEN_TTL")


def test_production_without_secret_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None) -> None:
    """Outside --dev, a missing KEYTURN_SECRET is refused with a clear line."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["users", "list"])
    assert result.exit_code == 2
    assert "KEYTURN_SECRET" in result.output
    assert not (tmp_path / "keyturn.secret").exists()
