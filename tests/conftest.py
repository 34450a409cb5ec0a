"""Shared fixtures: a controllable clock, settings on a real database, a started service, an app.

Nothing here mocks the database. Every test that uses ``database_url`` (directly or through
``settings``, ``service`` or ``client``) runs twice: on a SQLite file in pytest's temporary
directory and on its own database of a throwaway PostgreSQL server that the suite starts itself
(``tests/postgres.py``) and stops at the end. ``--backends sqlite`` (or
``KEYTURN_TEST_BACKENDS=sqlite``) runs only the first; ``@pytest.mark.sqlite_only`` marks a
test about SQLite itself.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyturn.core import clients as core_clients
from keyturn.core import tokens
from keyturn.core.passwords import Passwords
from keyturn.core.refresh import RefreshTokenCodec
from keyturn.server.config import Settings
from keyturn.server.http import create_app
from keyturn.server.mailer import CONSOLE_MAIL
from keyturn.server.service import Service
from keyturn.server.service import clients as clients_module
from keyturn.server.service import context as context_module
from keyturn.server.service import oauth as oauth_module
from keyturn.server.service.recovery import Recovery
from keyturn.server.store import Store

from .helpers import TOKEN_LIKE
from .postgres import PostgresServer

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
ISSUER = "https://auth.keyturn.test"


class Clock:
    """A clock the test moves by hand: ``clock()`` is now, ``clock.advance(seconds)`` moves it."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "keyturn.db"


BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backends",
        default=os.environ.get("KEYTURN_TEST_BACKENDS", ",".join(BACKENDS)),
        help="comma-separated databases to run the store, service and HTTP tests on (sqlite,postgresql)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: a test of SQLite itself (runs on the SQLite backend only)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that needs a database once per backend."""
    if "backend" not in metafunc.fixturenames:
        return
    wanted = [b.strip() for b in metafunc.config.getoption("backends").split(",") if b.strip()]
    unknown = set(wanted) - set(BACKENDS)
    if unknown:
        raise pytest.UsageError(f"--backends: unknown {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    if metafunc.definition.get_closest_marker("sqlite_only"):
        wanted = [b for b in wanted if b == "sqlite"]
    metafunc.parametrize("backend", wanted)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The suite's PostgreSQL server, with a migrated template database every test copies."""
    server = PostgresServer()
    try:
        server.start()
        template = server.create_database(PG_TEMPLATE)
        asyncio.run(_migrate(template))
        yield server
    finally:
        server.destroy()


PG_TEMPLATE = "keyturn_template"
_pg_names = itertools.count(1)
_pg_audit_rows: list[str] = []  # audit rows of dropped PostgreSQL test databases, for the secrecy scan


async def _migrate(url: str) -> None:
    store = Store.open(url)
    try:
        await store.db.migrate()
    finally:
        await store.close()


@pytest.fixture
def database_url(backend: str, db_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, migrated database of the test's backend, as a SQLAlchemy URL."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{db_path}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"test_{next(_pg_names)}"
    url = server.create_database(name, template=PG_TEMPLATE)
    try:
        yield url
    finally:
        try:
            _pg_audit_rows.extend(repr(r) for r in server.execute("SELECT * FROM audit_events", name))
        finally:
            server.drop_database(name)


def make_settings(database: Path | str, **overrides: Any) -> Settings:
    """Settings for tests: ``database`` is a SQLite file's path or a database URL."""
    url = database if isinstance(database, str) else f"sqlite+aiosqlite:///{database}"
    values: dict[str, Any] = {
        "database_url": url,
        "secret": secrets.token_urlsafe(48),
        "issuer": ISSUER,
        "env": "production",
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def app_client(
    database: Path | str, clock: Clock, passwords: Passwords, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the real ASGI app in-process, on a started service with ``make_settings``."""
    settings = make_settings(database, **overrides)
    svc = Service(settings, passwords=passwords, clock=clock)
    await svc.start()
    try:
        transport = httpx.ASGITransport(app=create_app(settings, service=svc))
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as c:
            yield c
    finally:
        await svc.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture(scope="session")
def fast_passwords() -> Passwords:
    """Cheap argon2id parameters: the hashing rules are the same, only the cost is lower."""
    return Passwords(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
async def service(settings: Settings, clock: Clock, fast_passwords: Passwords) -> AsyncIterator[Service]:
    svc = Service(settings, passwords=fast_passwords, clock=clock)
    await svc.start()
    yield svc
    await svc.close()


@pytest.fixture
async def client(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the real ASGI app in-process (the service is already started)."""
    app = create_app(service.settings, service=service)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51234))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER, headers={"user-agent": "pytest"}) as c:
        yield c


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every KEYTURN_* variable so settings tests see only what they set."""
    for name in list(os.environ):
        if name.startswith("KEYTURN_"):
            monkeypatch.delenv(name)


# --- Secrecy over the whole suite -------------------------------------------------------------
# Every token, client secret and mailed link keyturn mints in this process is remembered; every log
# record (at DEBUG) and every audit row of every test database is searched for them, and for the
# suite's passwords, at the end. The one exception is by design: the development mailer (console:)
# writes each message, its link included, to the log.

_PASSWORDS = ("correct horse battery staple", "a whole new passphrase", "an entirely new passphrase")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg is CONSOLE_MAIL:
            return
        try:
            self.lines.append(f"{record.getMessage()} {record.exc_text or ''}")
        except Exception:  # a broken third-party log call must not fail the suite
            self.lines.append(str(record.msg))


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log_or_audit_row(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Scan every log line and audit row the suite produced for a token or password it used."""
    minted: set[str] = set()
    original_issue, original_encode = tokens.issue_access_token, RefreshTokenCodec.encode

    def issue(*args: Any, **kwargs: Any) -> tuple[str, int]:
        token, exp = original_issue(*args, **kwargs)
        minted.add(token)
        return token, exp

    def encode(self: RefreshTokenCodec, *args: Any) -> str:
        token = original_encode(self, *args)
        minted.add(token)
        return token

    def new_secret() -> str:
        secret = original_secret()
        minted.add(secret)
        return secret

    original_secret = core_clients.new_secret

    async def new_link(self: Recovery, *args: Any) -> str:
        token = await original_link(self, *args)
        minted.add(token)
        return token

    original_link = Recovery._new_link

    collector = _Collect()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tokens, "issue_access_token", issue)
        patch.setattr(context_module, "issue_access_token", issue)
        patch.setattr(oauth_module, "issue_access_token", issue)
        patch.setattr(clients_module, "new_secret", new_secret)
        patch.setattr(RefreshTokenCodec, "encode", encode)
        patch.setattr(Recovery, "_new_link", new_link)
        yield
    root.removeHandler(collector)
    root.setLevel(previous_level)
    texts = collector.lines + _audit_rows(tmp_path_factory.getbasetemp()) + _pg_audit_rows
    leaked = {m for text in texts for m in TOKEN_LIKE.findall(text) if m in minted}
    leaked |= {p for p in _PASSWORDS for text in texts if p in text}
    assert not leaked, f"{len(leaked)} secret(s) found in logs or audit rows"


def _audit_rows(base: Path) -> list[str]:
    rows: list[str] = []
    for db in base.rglob("*.db"):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                rows += [repr(row) for row in conn.execute("SELECT * FROM audit_events")]
        except sqlite3.Error:
            continue
    return rows
