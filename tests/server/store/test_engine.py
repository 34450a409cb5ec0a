"""Integration tests of the engine's migration bookkeeping on a real SQLite file and PostgreSQL
database: what a readiness check reads, and that it logs nothing; and of SQLite's readers and its
write lock, taken on the loop when free and waited for in a thread when held; and of PostgreSQL's
pooled connections, checked in one round trip and replaced when the server dropped them."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import DBAPIError

from keyturn.core.errors import Unavailable
from keyturn.server.store import Store, _sqlite
from keyturn.server.store.engine import _current_revision
from tests.helpers import execute
from tests.server.store.rows import seed

pytestmark = pytest.mark.anyio


async def test_readiness_checks_log_nothing_at_info(
    store: Store, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """`/readyz` asks every few seconds: the migration state is read without a single INFO line
    (Alembic's "Context impl" and "Will assume ... DDL" among them); migrating a current schema
    (every start after the first) says nothing either, while a real migration still logs."""
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="alembic")
    assert await store.db.migration_state() == "current"
    assert await store.db.migrations_current()
    await store.db.migrate()
    assert [f"{r.name}: {r.getMessage()}" for r in caplog.records] == []
    fresh = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")
    try:
        await fresh.db.migrate()  # the capture works: a migration with work to do is logged
    finally:
        await fresh.close()
    assert any(r.name.startswith("alembic") for r in caplog.records)


async def _both_readings(store: Store) -> tuple[str | None, str | None]:
    async with store.db.engine.connect() as conn:
        ours = await conn.run_sync(_current_revision)
        alembics = await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    return ours, alembics


async def test_the_revision_readiness_reads_is_alembics(store: Store) -> None:
    """The version table is read directly (no MigrationContext, which logs); it agrees with
    Alembic's own reading at head, at an unknown revision, with no row, and with no table."""
    ours, alembics = await _both_readings(store)
    assert ours == alembics
    assert ours is not None
    for change in (
        "UPDATE alembic_version SET version_num = 'f00dfeed9999'",
        "DELETE FROM alembic_version",
        "DROP TABLE alembic_version",
    ):
        async with store.db.engine.begin() as conn:
            await conn.exec_driver_sql(change)
        ours, alembics = await _both_readings(store)
        assert ours == alembics, change
    assert ours is None


# --- the SQLite readers (``_sqlite.Readers``) -----------------------------------------------------


@pytest.mark.sqlite_only
async def test_a_reader_is_one_per_loop_and_cannot_write(store: Store) -> None:
    """Every point read of one event loop uses one connection, opened once even when the first
    reads come together; nothing can be written through it."""
    readers = store.db.readers
    assert readers is not None
    first = await asyncio.gather(*(readers.get() for _ in range(5)))
    assert len({id(conn) for conn in first}) == 1
    assert await readers.get() is first[0]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        first[0].execute("DELETE FROM users")


@pytest.mark.sqlite_only
async def test_a_reader_that_cannot_open_is_an_outage(tmp_path: Path) -> None:
    """A database the reader cannot open answers ``Unavailable``, as every other read does."""
    s = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    try:
        with pytest.raises(Unavailable) as raised:
            await s.session_and_user(uuid.uuid4())
        assert isinstance(raised.value.__cause__, DBAPIError)
    finally:
        await s.close()


async def test_begin_takes_a_free_write_lock_at_once_and_not_a_held_one(db_path: Path) -> None:
    """``BEGIN IMMEDIATE`` on the loop: with the lock free it begins; with another connection
    holding it, it gives up at once (no busy wait on the loop's thread) and begins nothing; either
    way the connection's busy timeout is the configured one afterwards."""
    conn = await _sqlite.connect(str(db_path), timeout=2.5)
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.control("PRAGMA journal_mode=WAL")
        assert conn.begin_at_once(conn.sqlite.cursor(), "BEGIN IMMEDIATE", ())
        assert conn.in_transaction
        await conn.rollback()
        other.execute("BEGIN IMMEDIATE")
        assert not conn.begin_at_once(conn.sqlite.cursor(), "BEGIN IMMEDIATE", ())
        assert not conn.in_transaction
        assert conn.sqlite.execute("PRAGMA busy_timeout").fetchone() == (2500,)
    finally:
        other.close()
        conn.stop()


@pytest.mark.sqlite_only
async def test_a_write_waits_for_a_held_lock_in_a_thread_while_the_loop_serves(
    store: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write whose lock is free begins on the loop (only its commit goes to a thread); one whose
    lock another connection holds waits in a thread, the loop serving reads meanwhile, and writes
    once the lock is released."""
    alice, s = await seed(store)
    assert await store.session_and_user(s.id) is not None  # the loop's reader is open
    offloaded: list[str] = []
    real = asyncio.to_thread

    async def spy(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        offloaded.append(args[0] if args else fn.__name__)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    async with store.write() as tx:
        await tx.set_roles(alice.id, "admin")
    assert offloaded == ["commit"]
    offloaded.clear()
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(_set_roles(store, alice.id, "auditor"))
        for _ in range(500):
            if offloaded:
                break
            await asyncio.sleep(0.01)
        assert offloaded == ["BEGIN IMMEDIATE"]
        assert await store.session_and_user(s.id) is not None  # the loop serves meanwhile
        assert not write.done()
        other.rollback()
        await write
    finally:
        other.close()
    assert offloaded == ["BEGIN IMMEDIATE", "commit"]
    user = await store.user_by_key(alice.username_key)
    assert user is not None
    assert user.roles == "auditor"


async def _set_roles(store: Store, user_id: uuid.UUID, roles: str) -> None:
    async with store.write() as tx:
        await tx.set_roles(user_id, roles)


async def test_a_pooled_postgresql_connection_is_checked_in_one_round_trip(store: Store) -> None:
    """Taking a pooled connection sends ``;`` alone (SQLAlchemy's pre-ping wraps it in BEGIN and
    ROLLBACK: three round trips before every transaction)."""
    if store.db.is_sqlite:
        pytest.skip("SQLite's connections are files: nothing to ping")
    sent: list[str] = []
    async with store.db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        raw.driver_connection.add_query_logger(lambda query: sent.append(query.query))  # type: ignore[union-attr]
    async with store.db.engine.connect():
        pass
    assert sent == [";"]


async def test_a_postgresql_connection_dropped_while_pooled_is_replaced_without_an_error(store: Store) -> None:
    """A database that dropped the pool's connections (a restart, a failover) costs no request an
    error: the check on checkout finds the dead connection, and every pooled one is replaced."""
    if store.db.is_sqlite:
        pytest.skip("SQLite's connections are files: nothing to drop")
    alice, s = await seed(store)
    async with store.db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pid = raw.driver_connection.get_server_pid()  # type: ignore[union-attr]
    await execute(store.db.url, "SELECT pg_terminate_backend(:pid)", pid=pid)  # from a connection of its own
    found = await store.session_and_user(s.id)
    assert found is not None
    assert found[1].id == alice.id
    async with store.db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert raw.driver_connection.get_server_pid() != pid  # type: ignore[union-attr]
