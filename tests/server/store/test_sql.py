"""Integration tests of the store on a real SQLite file and PostgreSQL database: schema,
transactions, compare-and-swap."""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, inspect

from keyturn.core.errors import Unavailable
from keyturn.core.sessions import Lifetimes
from keyturn.server.store import AuditRecord, Store
from tests.server.store.rows import NOW, UNTIL, bounds, seed, session, user
from tests.servers import free_port

pytestmark = pytest.mark.anyio

LIFETIMES = Lifetimes(idle=timedelta(days=7), absolute=timedelta(days=30), grace=timedelta(seconds=10))


async def test_migrations_create_the_schema_and_are_current(store: Store) -> None:
    """After migrate: the four tables exist and the schema is at head."""
    assert await store.db.migrations_current()
    async with store.db.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert {"users", "sessions", "signing_keys", "audit_events", "alembic_version"} <= tables


@pytest.mark.sqlite_only
async def test_sqlite_runs_in_wal_mode_with_full_sync(store: Store) -> None:
    """WAL journal, synchronous=FULL (2) and foreign keys on every pooled connection."""
    async with store.db.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1


@pytest.mark.sqlite_only
async def test_new_database_files_are_private(store: Store, db_path: Path) -> None:
    """The SQLite file and its WAL companions are created with mode 0600."""
    async with store.write() as tx:
        await tx.insert_user(user())
    for path in (db_path, db_path.with_name(db_path.name + "-wal")):
        assert path.stat().st_mode & 0o777 == 0o600


async def test_failed_write_transaction_leaves_nothing(store: Store) -> None:
    """An error inside a write transaction rolls every statement back."""

    async def write_then_fail() -> None:
        async with store.write() as tx:
            await tx.insert_user(user("ghost"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await write_then_fail()
    async with store.read() as tx:
        assert await tx.user_by_key("ghost") is None


async def test_audit_events_round_trip_and_filter(store: Store) -> None:
    """Audit rows keep their fields and can be filtered by user and event."""
    uid = uuid.uuid4()
    async with store.write() as tx:
        await tx.audit(AuditRecord(at=NOW, event="login", outcome="ok", user_id=uid, ip="::1", detail={"n": 1}))
        await tx.audit(AuditRecord(at=NOW, event="logout", outcome="ok", user_id=uid))
        await tx.audit(AuditRecord(at=NOW, event="login", outcome="failed"))
    async with store.read() as tx:
        mine = await tx.audit_events(user_id=uid, events=["login"])
    assert len(mine) == 1
    assert (mine[0].event, mine[0].ip, mine[0].detail) == ("login", "::1", {"n": 1})


async def test_unreachable_postgresql_is_unavailable_at_once() -> None:
    """A PostgreSQL server that refuses connections raises Unavailable, not a driver error."""
    s = Store.open(f"postgresql+asyncpg://keyturn@127.0.0.1:{free_port()}/keyturn", timeout=timedelta(seconds=2))
    try:
        with pytest.raises(Unavailable):
            async with s.read() as tx:
                await tx.session(uuid.uuid4())
    finally:
        await s.close()


async def test_unreachable_database_is_unavailable(tmp_path: Path) -> None:
    """A database that cannot be opened raises Unavailable, not a driver error."""
    s = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    try:
        with pytest.raises(Unavailable):
            async with s.read() as tx:
                await tx.session(uuid.uuid4())
    finally:
        await s.close()
    await _aiosqlite_threads_finished()


async def _aiosqlite_threads_finished() -> None:
    """aiosqlite stops the worker of a failed connect without waiting for it; let it finish
    while this test's event loop still runs, or it reports to a closed loop later."""
    for _ in range(200):
        if not any("_connection_worker_thread" in t.name for t in threading.enumerate()):
            return
        await asyncio.sleep(0.01)


async def test_a_schema_migrated_by_a_newer_version_is_served_not_touched(store: Store) -> None:
    """Rolling deploy: a revision this version does not know is newer; it stays ready and migrate leaves it be."""
    async with store.write() as tx:
        await tx._conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'f00dfeed9999'")
    assert await store.db.migration_state() == "ahead"
    assert await store.db.migrations_current()
    await store.db.migrate()
    assert await store.db.migration_state() == "ahead"
    async with store.write() as tx:
        await tx._conn.exec_driver_sql("DELETE FROM alembic_version")
    assert await store.db.migration_state() == "pending"
    assert not await store.db.migrations_current()


async def test_point_reads_alone_are_the_transactions_and_take_no_pooled_connection(store: Store) -> None:
    """``Store.session_and_user`` and ``Store.user_by_key`` give what a read transaction's give; on
    SQLite they check out no connection from the pool (they read on the loop's reader), on
    PostgreSQL one each."""
    alice, s = await seed(store)
    checkouts: list[object] = []

    def count(*args: object) -> None:
        checkouts.append(args)

    event.listen(store.db.engine.sync_engine.pool, "checkout", count)
    try:
        alone = await store.session_and_user(s.id)
        none = await store.session_and_user(uuid.uuid4())
        user = await store.user_by_key(alice.username_key)
        nobody = await store.user_by_key("nobody")
    finally:
        event.remove(store.db.engine.sync_engine.pool, "checkout", count)
    async with store.read() as tx:
        assert alone == await tx.session_and_user(s.id)
        assert user == await tx.user_by_key(alice.username_key)
    assert alone is not None
    assert alone[1].id == alice.id
    assert none is None
    assert user == alice
    assert nobody is None
    assert len(checkouts) == (0 if store.db.is_sqlite else 4)


async def test_a_rotation_alone_is_a_transactions_rotation_and_audit_row_in_one_statement(store: Store) -> None:
    """PostgreSQL's fast path, ``Store.rotate_alone``: for two like sessions, the same returned
    records, stored row and audit row as ``Tx.rotate_current`` and ``Tx.audit`` in a transaction;
    one statement, with no transaction around it; and when the session cannot rotate (a stale
    generation, a revoked session) None, with nothing written."""
    if store.db.is_sqlite:
        pytest.skip("SQLite's writers share a group commit: Store.rotate_alone is a writer of it there")
    alice, one = await seed(store)
    other = replace(session(alice.id), created_at=one.created_at)
    async with store.write() as tx:
        await tx.insert_session(other)
    inside = bounds(NOW + timedelta(minutes=1), rotated_after=NOW - timedelta(seconds=1), created_from=NOW)
    audit = AuditRecord(
        at=inside.now, event="refresh", outcome="ok", ip="10.0.0.1", user_agent="ua", detail={"generation": 1}
    )
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(store.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        mine = await store.rotate_alone(one.id, 0, inside, audit)
    finally:
        event.remove(store.db.engine.sync_engine, "before_cursor_execute", count)
    async with store.write() as tx:
        theirs = await tx.rotate_current(other.id, 0, inside)
        assert theirs is not None
        await tx.audit(replace(audit, user_id=alice.id, session_id=other.id))
    assert len(statements) == 1
    assert statements[0].lstrip().upper().startswith("WITH")
    assert mine is not None
    assert (replace(mine[0], id=other.id), mine[1]) == theirs
    async with store.read() as tx:
        stored = [await tx.session(sid) for sid in (one.id, other.id)]
        rows = await tx.audit_events(user_id=alice.id)
    assert stored[0] is not None
    assert replace(stored[0], id=other.id) == stored[1]
    written = {r.session_id: replace(r, id=None, session_id=None) for r in rows}
    assert set(written) == {one.id, other.id}
    assert written[one.id] == written[other.id]
    assert written[one.id].detail == {"generation": 1}
    async with store.write() as tx:
        await tx.revoke_sessions(alice.id, inside.now, "logout", only=other.id, tokens_until=UNTIL)
    assert await store.rotate_alone(one.id, 0, inside, audit) is None  # stale: it is at 1 now
    assert await store.rotate_alone(other.id, 1, inside, audit) is None  # revoked
    async with store.read() as tx:
        assert len(await tx.audit_events(user_id=alice.id)) == 2
        assert [(await tx.session(sid)).generation for sid in (one.id, other.id)] == [1, 1]  # type: ignore[union-attr]


async def test_point_reads_on_postgresql_are_one_statement_each_with_no_transaction(store: Store) -> None:
    """Each read alone is its statement and the pool's check, no BEGIN and no COMMIT around it
    (what the connection sends outside prepared statements: the checks only)."""
    if store.db.is_sqlite:
        pytest.skip("SQLite reads these on the loop's reader")
    alice, s = await seed(store)
    sent: list[str] = []
    async with store.db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        raw.driver_connection.add_query_logger(lambda query: sent.append(query.query))  # type: ignore[union-attr]
    assert await store.session_and_user(s.id) is not None
    assert await store.user_by_key(alice.username_key) is not None
    assert sent == [";", ";"]
