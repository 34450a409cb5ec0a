"""Integration tests of `keyturn serve|migrate|prune|secret`: in-process on a real SQLite file in a temp
directory, and the installed command in a subprocess against a real SQLite directory or the suite's
real PostgreSQL server (the database as a new user configures it).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from keyturn.server.service import Client, Service
from tests.postgres import PostgresServer
from tests.server.cli.runner import PASSWORD, Cli, with_service
from tests.servers import KEYTURN, free_port


def test_migrate(run: Cli) -> None:
    """`migrate` applies the schema and can run again."""
    assert "migrations applied" in run("migrate")
    assert "migrations applied" in run("migrate")


def test_secret_prints_a_strong_secret(run: Cli) -> None:
    """`keyturn secret` prints a value the production settings accept."""
    from keyturn.server.config import secret_weakness

    value = run("secret").strip()
    assert secret_weakness(value) is None


def test_prune_removes_ended_sessions_past_their_retention(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """`keyturn prune` deletes a signed-out session once KEYTURN_SESSION_RETENTION has passed, and says so."""
    run("users", "add", "alice", "--password-stdin", input=PASSWORD + "\n")

    async def sign_in_and_out(svc: Service) -> None:
        pair = await svc.auth.login("alice", PASSWORD, Client())
        await svc.auth.logout(None, pair.refresh_token, Client())

    with_service(run, monkeypatch, sign_in_and_out)
    assert (
        run("prune").strip()
        == "pruned 0 sessions, 0 audit rows, 0 sent mails, 0 email links and 0 revocation-feed entries"
    )  # kept for 7 days by default
    run.env["KEYTURN_SESSION_RETENTION"] = "0"
    assert (
        run("prune").strip()
        == "pruned 1 sessions, 0 audit rows, 0 sent mails, 0 email links and 0 revocation-feed entries"
    )
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
    from keyturn.server.cli.deployment import _dev_issuer

    assert _dev_issuer(host, 9000) == issuer
