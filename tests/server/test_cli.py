"""Integration tests of the `keyturn` command line, in-process, on a real SQLite file in a temp directory;
the database-configuration tests run the installed command in a subprocess, against a real SQLite
directory or the suite's real PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from typer.testing import CliRunner

from keyturn.core.errors import InvalidCredentials
from keyturn.server.cli import app
from keyturn.server.config import load_settings
from keyturn.server.service import Client, Service, run_with
from tests.postgres import PostgresServer
from tests.servers import KEYTURN, free_port

PASSWORD = "correct horse battery staple"
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


def test_users_grant_and_revoke_a_role(run: Cli) -> None:
    """The admin role is granted and revoked by the operator, shown by `users list`, audited; an
    unknown role or user is one clear line."""
    run("users", "add", "root", "--password-stdin", input=PASSWORD + "\n")
    assert "granted admin to root" in run("users", "grant", "root", "admin")
    assert "root already has admin" in run("users", "grant", "root", "admin")
    assert re.search(r"root\s+active\s+roles admin", run("users", "list"))
    assert "revoked admin from root" in run("users", "revoke", "root", "admin")
    assert re.search(r"root\s+active\s+roles -", run("users", "list"))
    assert "unknown role 'owner'" in run("users", "grant", "root", "owner", code=2)
    assert "No user named 'nobody'" in run("users", "grant", "nobody", "admin", code=1)
    events = run("audit", "--event", "role_granted", "--event", "role_revoked", "--json")
    assert [json.loads(line)["event"] for line in events.splitlines()] == ["role_revoked", "role_granted"]


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
    run("users", "add", "carol", "--password-stdin", input=PASSWORD + "\n")
    pair = _with_service(run, monkeypatch, lambda svc: svc.auth.login("carol", PASSWORD, Client()))
    token = pair.access_token
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
    from keyturn.server.config import secret_weakness

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


UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _with_service(run: Cli, monkeypatch: pytest.MonkeyPatch, work: Callable[[Service], Awaitable[T]]) -> T:
    """Run ``work`` on a Service built from the same environment as the CLI (wall-clock time)."""
    for name, value in run.env.items():
        monkeypatch.setenv(name, value)

    return asyncio.run(run_with(load_settings(), work))


def _user_id(out: str) -> str:
    found = re.search(rf"\(({UUID})\)", out)
    assert found, out
    return found.group(1)


def test_audit_lists_events_newest_first_in_aligned_columns(run: Cli) -> None:
    """`audit` prints one aligned line per event, newest first, with `-` for missing values."""
    alice = _user_id(run("users", "add", "alice", "--password-stdin", input=PASSWORD + "\n"))
    bob = _user_id(run("users", "add", "bob", "--password-stdin", input=PASSWORD + "\n"))
    run("users", "disable", "alice")
    lines = run("audit").splitlines()
    assert len(lines) == 3
    time = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"
    assert re.fullmatch(
        rf'{time}  user_disabled    ok       user {alice}  session -{" " * 35}  -  "keyturn-cli"  ended=0', lines[0]
    )
    assert re.fullmatch(
        rf'{time}  register         ok       user {bob}  session -{" " * 35}  -  "keyturn-cli"', lines[1]
    )
    assert f"user {alice}" in lines[2]
    assert len({line.index(" user ") for line in lines}) == 1
    assert len({line.index("  -  ") for line in lines}) == 1


def test_audit_json_lines_carry_every_field(run: Cli) -> None:
    """`--json` prints one JSON object per line with string UUIDs and a UTC `Z` time."""
    alice = _user_id(run("users", "add", "alice", "--password-stdin", input=PASSWORD + "\n"))
    run("users", "disable", "alice")
    rows = [json.loads(line) for line in run("audit", "--json").splitlines()]
    assert [r["event"] for r in rows] == ["user_disabled", "register"]
    assert set(rows[0]) == {"id", "at", "event", "outcome", "user_id", "session_id", "ip", "user_agent", "detail"}
    assert rows[0]["user_id"] == alice
    assert rows[0]["detail"] == {"ended": 0}
    assert rows[0]["session_id"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", rows[0]["at"])
    assert rows[0]["id"] > rows[1]["id"]


def test_audit_filters_by_event_user_and_time(run: Cli) -> None:
    """`--event` (repeatable), `--user`, `--since` and `--until` narrow the listing."""
    alice = _user_id(run("users", "add", "alice", "--password-stdin", input=PASSWORD + "\n"))
    run("users", "add", "bob", "--password-stdin", input=PASSWORD + "\n")
    run("users", "disable", "alice")
    registered = run("audit", "--event", "register").splitlines()
    assert len(registered) == 2
    assert all(" register " in line for line in registered)
    assert len(run("audit", "--event", "register", "--event", "user_disabled").splitlines()) == 3
    mine = run("audit", "--user", "alice").splitlines()
    assert len(mine) == 2
    assert all(f"user {alice}" in line for line in mine)
    assert len(run("audit", "--since", "1h").splitlines()) == 3
    assert len(run("audit", "--since", "2000-01-01T00:00:00", "--limit", "2").splitlines()) == 2
    assert run("audit", "--until", "1h") == ""
    assert run("audit", "--since", "2999-01-01T00:00:00+02:00") == ""


def test_audit_shows_logins_with_client_details_and_no_secrets(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Logins show IP and quoted user agent; a hostile agent is escaped and cut; no token or password leaks."""
    run("users", "add", "carol", "--password-stdin", input=PASSWORD + "\n")
    hostile = "\x1b[31mEvil\x1b[0m " + "x" * 100

    async def traffic(svc: Service) -> list[str]:
        pair = await svc.auth.login("carol", PASSWORD, Client(ip="203.0.113.7", user_agent="pytest"))
        with pytest.raises(InvalidCredentials):
            await svc.auth.login("carol", "wrong password!", Client(ip="2001:db8::1", user_agent=hostile))
        return [pair.access_token, pair.refresh_token, pair.csrf_token]

    secrets_seen = _with_service(run, monkeypatch, traffic)
    lines = run("audit", "--event", "login").splitlines()
    assert len(lines) == 2
    cut = "x" * 23  # 37 characters of the agent, then "..."
    assert lines[0].endswith(f'2001:db8::1  "\\u001b[31mEvil\\u001b[0m {cut}..."')
    assert re.search(rf' login            ok       user {UUID}  session {UUID}  203.0.113.7  "pytest"$', lines[1])
    assert "\x1b" not in run("audit")
    everything = run("audit") + run("audit", "--json")
    for value in [*secrets_seen, PASSWORD, "wrong password!"]:
        assert value not in everything


def test_audit_bad_since_is_one_line_and_exit_2(run: Cli) -> None:
    """A `--since` that is neither a time nor a duration stops with exit 2 and one line naming it."""
    out = run("audit", "--since", "yesterday", code=2)
    lines = [line for line in out.splitlines() if line]
    assert len(lines) == 1
    assert lines[0].startswith("keyturn: --since 'yesterday' is not an ISO 8601 time or a duration")


def test_audit_unknown_user_is_one_clear_error(run: Cli) -> None:
    """`--user` with an unknown name exits 1 with one line, not an empty listing."""
    out = run("audit", "--user", "nobody", code=1)
    assert out.strip() == "keyturn: No user named 'nobody'."


def test_prune_removes_ended_sessions_past_their_retention(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """`keyturn prune` deletes a signed-out session once KEYTURN_SESSION_RETENTION has passed, and says so."""
    run("users", "add", "alice", "--password-stdin", input=PASSWORD + "\n")

    async def sign_in_and_out(svc: Service) -> None:
        pair = await svc.auth.login("alice", PASSWORD, Client())
        await svc.auth.logout(None, pair.refresh_token, Client())

    _with_service(run, monkeypatch, sign_in_and_out)
    assert run("prune").strip() == "pruned 0 sessions and 0 audit rows"  # kept for 7 days by default
    run.env["KEYTURN_SESSION_RETENTION"] = "0"
    assert run("prune").strip() == "pruned 1 sessions and 0 audit rows"
    assert "pruned" in run("audit", "--event", "pruned")


# --- the database as a new user configures it (issue 13, point 8) ----------------------------------
# These run the installed `keyturn` command in a subprocess, as a user would, against a real SQLite
# directory or the suite's real PostgreSQL server.


def keyturn(cwd: Path, *args: str, input: str = "", **settings: str) -> subprocess.CompletedProcess[str]:
    """Run `keyturn <args>` in ``cwd`` with only the given KEYTURN_* settings (and a secret and issuer)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env.update(KEYTURN_SECRET=secrets.token_urlsafe(48), KEYTURN_ISSUER="https://auth.keyturn.test")
    env.update({f"KEYTURN_{k.upper()}": v for k, v in settings.items()})
    command = [str(KEYTURN), *args]
    return subprocess.run(command, cwd=cwd, env=env, input=input, capture_output=True, text=True, timeout=60)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The only line a failed command printed (asserting there is exactly one, and no traceback)."""
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def pg_server(request: pytest.FixtureRequest) -> PostgresServer:
    if "postgresql" not in request.config.getoption("backends"):
        pytest.skip("PostgreSQL backend not selected")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server


def unwritable_directory(tmp_path: Path) -> Path:
    """A directory this process cannot create files in: a 0555 one, or (as root, who may write
    anywhere) sysfs, which refuses new files to everyone."""
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    for candidate in (folder, Path("/sys")):
        try:
            os.close(os.open(candidate / "probe.db", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError:
            return candidate
        (candidate / "probe.db").unlink()
    pytest.skip("no directory here refuses this process a new file")


PASSWORD_ROLE = "keyturn_pw"


def password_role(server: PostgresServer) -> None:
    """A role that must give its password (scram-sha-256 for it alone, ahead of the suite's trust lines)."""
    hba = server.data / "pg_hba.conf"
    line = f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
    if line in hba.read_text():
        return
    server.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD 'the-right-password'")
    hba.write_text(line + hba.read_text())
    server.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10  # the postmaster applies the reload shortly after the signal
    while time.monotonic() < deadline:
        try:
            asyncio.run(_connect_as_role(server))
        except Exception as exc:  # InvalidPasswordError once the reload is applied
            if "password" in str(exc):
                return
        time.sleep(0.05)
    raise AssertionError("pg_hba.conf reload was not applied")


async def _connect_as_role(server: PostgresServer) -> None:
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", port=server.port, user=PASSWORD_ROLE, database="postgres")
    await conn.close()


MISTAKES = ["sqlite-directory-missing", "sqlite-directory-read-only", "postgresql-unreachable",
            "postgresql-unknown-user", "postgresql-wrong-password", "postgresql-database-missing"]  # fmt: skip


def mistake(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str]:
    """(KEYTURN_DATABASE_URL as a user would get it wrong, the reason the one line must give)."""
    if name == "sqlite-directory-missing":
        return f"sqlite:///{tmp_path}/no-such-dir/keyturn.db", f"the directory {tmp_path}/no-such-dir does not exist"
    if name == "sqlite-directory-read-only":
        folder = unwritable_directory(tmp_path)
        return f"sqlite:///{folder}/keyturn.db", f"cannot create {folder}/keyturn.db: Permission denied"
    if name == "postgresql-unreachable":
        return f"postgresql://keyturn:pw@127.0.0.1:{free_port()}/keyturn", "connection refused"
    server = pg_server(request)
    at = f"127.0.0.1:{server.port}"
    if name == "postgresql-unknown-user":
        return f"postgresql://nobody:pw@{at}/postgres", 'role "nobody" does not exist'
    if name == "postgresql-wrong-password":
        password_role(server)
        return (
            f"postgresql://{PASSWORD_ROLE}:the-wrong-password@{at}/postgres",
            f'password authentication failed for user "{PASSWORD_ROLE}"',
        )
    return f"postgres://keyturn@{at}/no_such_db", 'database "no_such_db" does not exist'


@pytest.mark.parametrize("name", MISTAKES)
def test_a_database_mistake_is_one_line_and_a_nonzero_exit(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """serve, a one-shot command and migrate each stop with exit 1 and one line saying what is wrong
    with KEYTURN_DATABASE_URL (never a traceback, never the password)."""
    url, reason = mistake(name, tmp_path, request)
    for args in (("users", "list"), ("migrate",), ("serve", "--port", str(free_port()))):
        result = keyturn(tmp_path, *args, database_url=url)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        line = one_line(result)
        assert line.startswith("keyturn: cannot use the database "), (args, line)
        assert "(KEYTURN_DATABASE_URL)" in line
        assert reason in line, (args, line)
        assert "the-wrong-password" not in line


def test_plain_sqlite_url_works(tmp_path: Path) -> None:
    """KEYTURN_DATABASE_URL=sqlite:///keyturn.db, as users write it, opens that file with keyturn's driver."""
    add = ("users", "add", "alice", "--password-stdin")
    result = keyturn(tmp_path, *add, input=PASSWORD + "\n", database_url="sqlite:///plain.db")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "plain.db").exists()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_plain_postgresql_url_with_sslmode_works(scheme: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """postgresql:// and postgres:// open with asyncpg, and libpq's sslmode reaches asyncpg as ssl."""
    server = pg_server(request)
    name = f"cli_plain_{scheme}"
    server.create_database(name)
    try:
        url = f"{scheme}://keyturn@127.0.0.1:{server.port}/{name}"
        result = keyturn(tmp_path, "users", "list", database_url=f"{url}?sslmode=disable")
        assert result.returncode == 0, result.stderr
        # The suite's server speaks no TLS: sslmode=require must reach asyncpg and be refused by the server.
        refused = keyturn(tmp_path, "users", "list", database_url=f"{url}?sslmode=require")
        assert refused.returncode == 1
        assert "rejected SSL upgrade" in one_line(refused)
    finally:
        server.drop_database(name)


@pytest.mark.parametrize(
    ("url", "reason"),
    [("mysql://kt:pw@db/keyturn", "'mysql://' is not supported"), ("sqlite://", "in-memory SQLite"),
     ("postgresql://kt:pw@db:five/keyturn", "is malformed")],
)  # fmt: skip
def test_an_unusable_database_url_is_one_line_and_exit_2(url: str, reason: str, tmp_path: Path) -> None:
    """A URL keyturn cannot open is refused before anything starts: exit 2, one line naming the setting."""
    result = keyturn(tmp_path, "users", "list", database_url=url)
    assert result.returncode == 2
    assert one_line(result).startswith(f"keyturn: invalid setting KEYTURN_DATABASE_URL: {reason}")


@pytest.mark.parametrize(
    ("host", "issuer"),
    [("127.0.0.1", "http://127.0.0.1:9000"), ("0.0.0.0", "http://127.0.0.1:9000"),  # noqa: S104 - not bound
     ("::", "http://127.0.0.1:9000"),
     ("::1", "http://[::1]:9000"), ("localhost", "http://localhost:9000"), ("devbox.lan", "http://devbox.lan:9000")],
)  # fmt: skip
def test_dev_issuer_follows_host_and_port(host: str, issuer: str) -> None:
    """`keyturn --dev serve --host H --port N` issues for http://H:N; all addresses (0.0.0.0, ::) mean 127.0.0.1."""
    from keyturn.server.cli import _dev_issuer

    assert _dev_issuer(host, 9000) == issuer
