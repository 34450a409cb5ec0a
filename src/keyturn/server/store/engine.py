"""Connections, transactions and migrations; every database failure becomes ``Unavailable``.

SQLite runs in WAL mode with ``synchronous=FULL`` (a committed rotation survives a
power cut). Write transactions there start with ``BEGIN IMMEDIATE`` so that two
writers queue on the lock instead of failing when one upgrades a read snapshot;
reads run in autocommit mode. Statements run on the event loop's thread and only the waits
(a held write lock, ``COMMIT``) in a worker thread (``_sqlite``); a process's writers queue
together and share commits (``_groupcommit``).

PostgreSQL connections come from a pool that pings each one as it is checked out (``_postgres``),
so a restarted server is picked up without restarting keyturn; connecting and every statement are
bounded by the configured timeout. Work that must happen once across processes (migrations, the
first signing key) takes a transaction-scoped advisory lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, event, inspect, make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from ...core.errors import Unavailable
from . import _diagnosis, _postgres, _sqlite
from ._groupcommit import GroupCommit
from .url import redacted

__all__ = ["Database", "advisory_lock"]

_log = logging.getLogger("keyturn.store")
# aiosqlite logs statements *with their parameters* at DEBUG: quiet even under a DEBUG root logger.
logging.getLogger("aiosqlite").setLevel(logging.INFO)
_OUTAGE, _GUARD = _diagnosis.OUTAGE, _diagnosis.Guard()
_WRITE = "keyturn_write"
MIGRATION_TIMEOUT_S = 600.0
_MIGRATION_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


class Database:
    """An async engine with read and write transactions and Alembic migrations."""

    def __init__(
        self, url: str, *, timeout: timedelta = timedelta(seconds=5), pool_size: int = 10, max_overflow: int = 10
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._timeout = timeout.total_seconds()
        self._file_error: OSError | None = None  # creating the SQLite file failed: check() says why
        self._writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupCommit] = weakref.WeakKeyDictionary()
        self.readers: _sqlite.Readers | None = None  # SQLite: point reads on the driver (``_direct``)
        # hide_parameters: SQL logs and driver errors never show values (password hashes, IPs).
        options = self._engine_options(pool_size, max_overflow)
        self.engine: AsyncEngine = create_async_engine(url, hide_parameters=True, **options)
        if self.is_sqlite:
            self._file_error = _create_private_file(make_url(url).database)
            event.listen(self.engine.sync_engine, "connect", self._sqlite_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        else:  # pool_pre_ping's check in one round trip, not three
            event.listen(self.engine.sync_engine.pool, "checkout", _postgres.ping_on_checkout)

    def _engine_options(self, pool_size: int, max_overflow: int) -> dict[str, Any]:
        if self.is_sqlite:
            url = make_url(self.url)
            args, kwargs = url.get_dialect()().create_connect_args(url)
            kwargs = {**kwargs, "timeout": self._timeout}
            self.readers = _sqlite.Readers(args, kwargs)

            async def connect() -> Any:
                return await _sqlite.connect(*args, **kwargs)

            return {"async_creator": connect, "pool_size": pool_size, "max_overflow": 0}
        return {
            "pool_size": pool_size,
            "max_overflow": max_overflow,
            "pool_timeout": self._timeout,
            "pool_recycle": 1800,  # behind a proxy or load balancer idle connections get cut
            "connect_args": {
                "timeout": self._timeout,
                "command_timeout": self._timeout,
                "server_settings": {"application_name": "keyturn"},
            },
        }

    def _sqlite_connect(self, dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (see _sqlite_begin).
        dbapi_connection.isolation_level = None
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()
        except Exception:
            # SQLAlchemy does not close a connection whose connect hook failed; aiosqlite's
            # worker thread would outlive it.
            with contextlib.suppress(Exception):
                dbapi_connection.close()
            raise

    async def dispose(self) -> None:
        if self.readers is not None:
            self.readers.close()
        await self.engine.dispose()

    @asynccontextmanager
    async def read(self, *, scan: bool = False) -> AsyncIterator[AsyncConnection]:
        """A read-only unit of work. On SQLite each statement reads its own snapshot (no BEGIN);
        use ``write`` where several reads must agree. ``scan``: the statements may read many rows
        (a count over every session), so on SQLite they run in a worker thread, not on the loop."""
        async with self.guard(), self.engine.begin() as conn:
            if not (scan and self.is_sqlite):
                yield conn
                return
            with _sqlite.inline(conn).offloaded():
                yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed on success, rolled back on any error.

        SQLite: this process's writers queue for the file's one write lock here (instead of each
        sleeping in SQLite's busy handler), and those queued together share a commit
        (``_groupcommit``); each still returns only once its work is durable."""
        async with self.guard():
            if self.is_sqlite:
                async with self._group_commit().write() as conn:
                    yield conn
                return
            async with self.engine.connect() as conn:
                await conn.execution_options(**{_WRITE: True})
                async with conn.begin():
                    yield conn

    def _group_commit(self) -> GroupCommit:
        loop = asyncio.get_running_loop()
        found = self._writers.get(loop)
        if found is None:
            found = self._writers[loop] = GroupCommit(self._begin_write, self._timeout)
        return found

    async def _begin_write(self) -> tuple[AsyncConnection, AsyncTransaction]:
        conn = await self.engine.connect()
        try:
            await conn.execution_options(**{_WRITE: True})
            return conn, await conn.begin()
        except BaseException:
            await conn.close()
            raise

    def guard(self) -> _diagnosis.Guard:
        """Database failures inside become ``Unavailable`` (logged by their type only)."""
        return _GUARD

    async def check(self) -> None:
        """Connect once, at start-up: raise ``Unavailable`` saying what is wrong with the database
        (its URL without the password, and the driver's reason) if it cannot be used."""
        problem = _diagnosis.sqlite_problem(make_url(self.url).database, self._file_error) if self.is_sqlite else None
        if problem is None:
            try:
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            except _OUTAGE as exc:
                problem = _diagnosis.cause(exc, self._timeout)
        if problem is not None:
            raise Unavailable(f"cannot use the database {redacted(self.url)} (KEYTURN_DATABASE_URL): {problem}")

    async def migrate(self) -> None:
        """Apply every Alembic migration up to head.

        A schema that a newer keyturn has already migrated further is left alone (migrations are
        additive, so this version keeps working during a rolling deploy), and so is a current one,
        without a word: every start after the first (and the app's own start after ``keyturn
        serve`` migrated) reads the version and goes on. Alembic keeps its migration context in
        module globals, so migrations in one process run one at a time; other processes wait on
        an advisory lock, for as long as a migration takes.
        """
        if await self.migrations_current():
            return
        lock = _MIGRATION_LOCKS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        engine = self._migration_engine()
        try:
            async with lock, self.guard(), engine.begin() as conn:
                await advisory_lock(conn, "migrate")  # instances starting together migrate one by one
                await conn.run_sync(_upgrade)
        finally:
            if engine is not self.engine:
                await engine.dispose()

    def _migration_engine(self) -> AsyncEngine:
        """PostgreSQL: a connection without the statement timeout (waiting for another instance's
        migration, or a long one, is not an outage). SQLite: the engine itself."""
        if self.is_sqlite:
            return self.engine
        args = {"timeout": self._timeout, "command_timeout": MIGRATION_TIMEOUT_S}
        return create_async_engine(self.url, hide_parameters=True, poolclass=NullPool, connect_args=args)

    async def migration_state(self) -> str:
        """``current`` (at this version's newest migration), ``ahead`` (a newer keyturn migrated
        further), or ``pending`` (migrations to apply). Logs nothing: readiness probes ask often."""
        async with self.read() as conn:
            revision = await conn.run_sync(_current_revision)
        return _state(revision)

    async def migrations_current(self) -> bool:
        """Whether the schema serves this version: at its newest migration, or beyond it."""
        return await self.migration_state() != "pending"


def _state(revision: str | None) -> str:
    script = ScriptDirectory.from_config(_alembic_config())
    if revision == script.get_current_head():
        return "current"
    if revision is None:
        return "pending"
    try:
        script.get_revision(revision)
    except CommandError:
        return "ahead"
    return "pending"


async def advisory_lock(conn: AsyncConnection, name: str) -> None:
    """Hold the lock ``name`` until the transaction ends, across every process on the database.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: nothing to do, a write transaction
    (``BEGIN IMMEDIATE``) already excludes every other writer.
    """
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"keyturn:{name}".encode()).digest()[:8], "big", signed=True)
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _create_private_file(path: str | None) -> OSError | None:
    """Create a new SQLite file readable by its owner only (SQLite gives its -wal and -shm that mode)."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return None
    except OSError as exc:  # a missing or read-only directory: check() says so in one line
        return exc
    return None


def _sqlite_begin(conn: Connection) -> None:
    if conn.get_execution_options().get(_WRITE):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "keyturn.server.store:migrations")
    return cfg


def _current_revision(conn: Connection) -> str | None:
    """The schema's Alembic revision, read where Alembic keeps it (``alembic_version``), or None.

    Not through Alembic's ``MigrationContext``: making one logs two INFO lines ("Context impl",
    "Will assume ... DDL"), and a readiness probe every few seconds would flood the log with them.
    A test pins that this reads what Alembic reads.
    """
    if not inspect(conn).has_table("alembic_version"):
        return None
    revision: str | None = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
    return revision


def _upgrade(conn: Connection) -> None:
    revision = _current_revision(conn)
    if _state(revision) == "ahead":
        _log.warning("database schema %s is newer than this keyturn; not migrating", revision)
        return
    cfg = _alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")
