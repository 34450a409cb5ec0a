"""Integration tests of the store on a real SQLite file and PostgreSQL database: schema,
transactions, compare-and-swap."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect

from keyturn.core.errors import Unavailable, UsernameTaken
from keyturn.server.store import AuditRecord, SessionRecord, Store, UserRecord
from tests.helpers import fetch
from tests.servers import free_port

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = Store.open(database_url)
    await s.db.migrate()
    yield s
    await s.close()


def user(name: str = "alice") -> UserRecord:
    return UserRecord(uuid.uuid4(), name, name.casefold(), "$argon2id$fake", NOW, NOW)


def session(user_id: uuid.UUID, generation: int = 0) -> SessionRecord:
    return SessionRecord(
        id=uuid.uuid4(), user_id=user_id, generation=generation, created_at=NOW, rotated_at=NOW, last_used_at=NOW,
        client_id="keyturn", scope="profile", user_agent="ua", ip="127.0.0.1",
    )  # fmt: skip


async def seed(store: Store) -> tuple[UserRecord, SessionRecord]:
    """One user with one session, committed."""
    alice = user()
    s = session(alice.id)
    async with store.write() as tx:
        await tx.insert_user(alice)
        await tx.insert_session(s)
    return alice, s


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


async def test_user_round_trip_with_aware_datetimes(store: Store) -> None:
    """What goes in comes back, with UTC-aware datetimes."""
    alice = user()
    async with store.write() as tx:
        await tx.insert_user(alice)
    async with store.read() as tx:
        found = await tx.user_by_key("alice")
    assert found == alice
    assert found is not None
    assert found.created_at.tzinfo is not None


async def test_duplicate_username_is_username_taken_and_the_transaction_goes_on(store: Store) -> None:
    """The unique key is enforced; a savepoint keeps the rest of the transaction usable."""
    async with store.write() as tx:
        await tx.insert_user(user("alice"))
    async with store.write() as tx:
        with pytest.raises(UsernameTaken):
            await tx.insert_user(user("alice"))
        await tx.insert_user(user("bob"))
    async with store.read() as tx:
        assert [u.username for u in await tx.list_users()] == ["alice", "bob"]


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


async def test_rotation_is_a_compare_and_swap_on_generation(store: Store) -> None:
    """Only the caller holding the current generation moves it; the second one loses."""
    _, s = await seed(store)
    later = NOW + timedelta(minutes=1)
    async with store.write() as tx:
        assert await tx.rotate_session(s.id, 0, later) is True
        assert await tx.rotate_session(s.id, 0, later) is False
    async with store.read() as tx:
        row = await tx.session(s.id)
    assert row is not None
    assert (row.generation, row.rotated_at, row.last_used_at) == (1, later, later)


async def test_rotate_current_moves_only_a_live_current_session_inside_its_bounds(store: Store) -> None:
    """The one-statement rotation: a strict bound on rotated_at, an inclusive one on created_at,
    the generation, and a live session of an enabled user; it returns the new row and the roles."""
    alice, s = await seed(store)
    later = NOW + timedelta(minutes=1)
    async with store.write() as tx:
        at_bound = {"rotated_after": NOW, "created_from": NOW - timedelta(days=1)}
        assert await tx.rotate_current(s.id, 0, later, **at_bound) is None  # rotated_at == bound: not after
        created_bound = {"rotated_after": NOW - timedelta(days=1), "created_from": NOW + timedelta(microseconds=1)}
        assert await tx.rotate_current(s.id, 0, later, **created_bound) is None
        inside = {"rotated_after": NOW - timedelta(microseconds=1), "created_from": NOW}  # created_at == bound: in
        assert await tx.rotate_current(s.id, 1, later, **inside) is None  # not the current generation
        found = await tx.rotate_current(s.id, 0, later, **inside)
        assert found is not None
        row, roles = found
        assert (row.id, row.generation, row.rotated_at, row.last_used_at, row.created_at) == (
            s.id,
            1,
            later,
            later,
            NOW,
        )
        assert roles == ""
        assert await tx.rotate_current(s.id, 0, later, **inside) is None  # lost the compare-and-swap
        assert await tx.revoke_sessions(alice.id, later, "logout") == [s.id]
        assert await tx.rotate_current(s.id, 1, later, **inside) is None  # revoked


async def test_rotate_current_refuses_a_disabled_users_session_and_reads_the_roles_of_now(store: Store) -> None:
    """The fast path checks the user in the same statement: a disabled user's live session does
    not rotate, and the roles returned are the user's at the time of the rotation."""
    alice, s = await seed(store)
    bounds = {"rotated_after": NOW - timedelta(days=1), "created_from": NOW - timedelta(days=1)}
    async with store.write() as tx:
        await tx.set_roles(alice.id, "admin")
        found = await tx.rotate_current(s.id, 0, NOW, **bounds)
        assert found is not None
        assert found[1] == "admin"
        await tx.set_roles(alice.id, "")
        found = await tx.rotate_current(s.id, 1, NOW, **bounds)
        assert found is not None
        assert found[1] == ""
        assert await tx.disable_user(alice.id, NOW)
        assert await tx.rotate_current(s.id, 2, NOW, **bounds) is None
    async with store.read() as tx:
        row = await tx.session(s.id)
    assert row is not None
    assert row.generation == 2


async def test_a_session_revoked_by_transactions_at_once_is_revoked_once(store: Store) -> None:
    """revoke_sessions is one statement: of eight transactions ending one session at once, one
    revokes it (its time and reason stay) and reports it, so it is audited once (a sibling of
    review finding 3: on PostgreSQL a separate read and write revoked and reported it eight times)."""
    alice, s = await seed(store)

    async def revoke(reason: str) -> list[uuid.UUID]:
        async with store.write() as tx:
            return await tx.revoke_sessions(alice.id, NOW, reason, only=s.id)

    results = await asyncio.gather(*(revoke(f"reason-{i}") for i in range(8)))
    winners = [i for i, ended in enumerate(results) if ended]
    assert len(winners) == 1
    assert results[winners[0]] == [s.id]
    async with store.read() as tx:
        row = await tx.session(s.id)
    assert row is not None
    assert row.revoke_reason == f"reason-{winners[0]}"


async def test_a_password_hash_is_replaced_only_if_it_is_the_one_checked(store: Store) -> None:
    """set_password_hash is a compare-and-swap on the hash a password was checked against."""
    alice, _ = await seed(store)
    async with store.write() as tx:
        assert await tx.set_password_hash(alice.id, "second", NOW, replacing="not the stored hash") is False
        assert await tx.set_password_hash(alice.id, "second", NOW, replacing=alice.password_hash) is True
        assert await tx.set_password_hash(alice.id, "third", NOW, replacing=alice.password_hash) is False
        locked = await tx.lock_user(alice.id)
    assert locked is not None
    assert locked.password_hash == "second"


async def test_password_attempts_are_charged_atomically_up_to_the_limit(store: Store) -> None:
    """charge_password_attempt counts while under the limit and refuses at it, or on a revoked session."""
    alice, s = await seed(store)
    async with store.write() as tx:
        assert [await tx.charge_password_attempt(s.id, 2) for _ in range(3)] == [True, True, False]
        await tx.clear_password_attempts(s.id)
        assert await tx.charge_password_attempt(s.id, 2) is True
        await tx.revoke_sessions(alice.id, NOW, "logout")
        assert await tx.charge_password_attempt(s.id, 2) is False


async def test_revoked_session_never_rotates(store: Store) -> None:
    """The CAS also requires the session to be live."""
    alice, s = await seed(store)
    async with store.write() as tx:
        assert await tx.revoke_sessions(alice.id, NOW, "logout") == [s.id]
        assert await tx.rotate_session(s.id, 0, NOW) is False


async def test_revoke_only_one_or_all_but_one(store: Store) -> None:
    """revoke_sessions(only=) ends one; keep= ends the rest; revoked ones are not counted twice."""
    alice = user()
    a, b, c = session(alice.id), session(alice.id), session(alice.id)
    async with store.write() as tx:
        await tx.insert_user(alice)
        for s in (a, b, c):
            await tx.insert_session(s)
        assert await tx.revoke_sessions(alice.id, NOW, "x", only=a.id) == [a.id]
        assert set(await tx.revoke_sessions(alice.id, NOW, "y", keep=c.id)) == {b.id}
        assert await tx.revoke_sessions(alice.id, NOW, "z", only=a.id) == []
    async with store.read() as tx:
        live = await tx.live_sessions(alice.id, NOW - timedelta(days=1))
    assert [s.id for s in live] == [c.id]


async def test_storage_per_session_is_constant_across_rotations(store: Store, database_url: str) -> None:
    """1,000 rotations leave one session row of the same size."""
    _, s = await seed(store)
    if store.db.is_sqlite:
        sql = "SELECT count(*), length(id) + length(generation) + length(rotated_at) FROM sessions"
    else:
        sql = "SELECT count(*), sum(pg_column_size(s.*)) FROM sessions s"
    [before] = await fetch(database_url, sql)
    for generation in range(1000):
        async with store.write() as tx:
            assert await tx.rotate_session(s.id, generation, NOW + timedelta(seconds=generation))
    [after] = await fetch(database_url, sql)
    assert before[0] == after[0] == 1
    assert abs(after[1] - before[1]) <= 3  # the generation number's digits


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
            await s.db.ping()
    finally:
        await s.close()


async def test_unreachable_database_is_unavailable(tmp_path: Path) -> None:
    """A database that cannot be opened raises Unavailable, not a driver error."""
    s = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    try:
        with pytest.raises(Unavailable):
            await s.db.ping()
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
