"""Integration tests of keyturn.server.store._direct on a real SQLite file and PostgreSQL database:
the hot statements run on SQLite's driver give exactly what SQLAlchemy gives for them (values and
their types, aware UTC datetimes, UUIDs, JSON), write exactly what it writes, and fail as it fails."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, Table, Uuid, bindparam, event, insert, select
from sqlalchemy.exc import DBAPIError

from keyturn.core.errors import Unavailable
from keyturn.server.store import AuditRecord, Store
from keyturn.server.store import _sessions as queries
from keyturn.server.store import _users as users
from keyturn.server.store._direct import Direct
from keyturn.server.store._queries import values
from keyturn.server.store.schema import audit_events
from tests.server.store.rows import NOW, bounds, seed, session

pytestmark = pytest.mark.anyio


async def test_session_and_user_row_is_sqlalchemys(store: Store) -> None:
    """Every column, its value and its type, for a user with roles and a verified address."""
    alice, s = await seed(store)
    async with store.write() as tx:
        await tx.set_roles(alice.id, "admin")
        await tx.set_email(alice.id, "Alice@Example.org", "alice@example.org")
        assert await tx.mark_email_verified(alice.id, "alice@example.org", NOW)
    direct = queries.SESSION_AND_USER
    async with store.read() as tx:
        mine = await direct.first(tx._conn, {"sid": s.id})
        theirs = (await tx._conn.execute(direct.statement, {"sid": s.id})).one()._asdict()
        missing = await direct.first(tx._conn, {"sid": uuid.uuid4()})
    assert mine == theirs
    assert [type(v) for v in mine.values()] == [type(v) for v in theirs.values()]
    assert mine["id"] == s.id
    assert mine["u_roles"] == "admin"
    assert mine["u_email_verified_at"] == NOW
    assert mine["created_at"].utcoffset() == timedelta(0)
    assert missing is None


async def test_user_row_is_sqlalchemys(store: Store) -> None:
    """The user by name (a sign-in's first read): every column, its value and its type."""
    alice, _ = await seed(store)
    async with store.write() as tx:
        await tx.set_roles(alice.id, "admin")
        await tx.set_email(alice.id, "Alice@Example.org", "alice@example.org")
    direct = users.USER_BY_KEY
    async with store.read() as tx:
        mine = await direct.first(tx._conn, {"key": alice.username_key})
        theirs = (await tx._conn.execute(direct.statement, {"key": alice.username_key})).one()._asdict()
        missing = await direct.first(tx._conn, {"key": "nobody"})
    assert mine == theirs
    assert [type(v) for v in mine.values()] == [type(v) for v in theirs.values()]
    assert mine["id"] == alice.id
    assert mine["roles"] == "admin"
    assert mine["created_at"].utcoffset() == timedelta(0)
    assert missing is None


async def test_rotation_row_and_write_are_sqlalchemys(store: Store) -> None:
    """Two like sessions, one rotated by ``Direct`` and one by SQLAlchemy: the same returned row
    (but for the id) and the same stored row."""
    alice, one = await seed(store)
    other = replace(session(alice.id), created_at=one.created_at)
    async with store.write() as tx:
        await tx.insert_session(other)
    later = NOW + timedelta(minutes=1)
    params = {
        "gen": 0, "next": 1, "at": later,
        **{"rotated_after": NOW - timedelta(seconds=1), "created_from": NOW - timedelta(days=1)},
    }  # fmt: skip
    direct = queries._ROTATE_CURRENT
    async with store.write() as tx:
        mine = await direct.first(tx._conn, {"sid": one.id, **params})
        theirs = (await tx._conn.execute(direct.statement, {"sid": other.id, **params})).one()._asdict()
        again = await direct.first(tx._conn, {"sid": one.id, **params})  # the generation moved on
    assert mine is not None
    assert again is None
    assert {**mine, "id": None} == {**theirs, "id": None}
    assert (mine["generation"], mine["rotated_at"], mine["user_roles"], mine["user_verified_at"]) == (
        1,
        later,
        "",
        None,
    )
    async with store.read() as tx:
        stored = [await tx.session(sid) for sid in (one.id, other.id)]
    assert stored[0] is not None
    assert stored[1] is not None
    assert replace(stored[0], id=other.id) == stored[1]


async def test_audit_row_is_stored_as_sqlalchemy_stores_it(store: Store) -> None:
    """A row with JSON details, an aware time and a user id, inserted both ways, reads back the same."""
    record = AuditRecord(
        at=NOW, event="refresh", outcome="ok", user_id=uuid.uuid4(), session_id=uuid.uuid4(), ip="203.0.113.7",
        user_agent="ua", detail={"generation": 3, "nested": {"a": [1, "é"]}},
    )  # fmt: skip
    async with store.write() as tx:
        await tx.audit(record)  # Direct
        row = {k: v for k, v in values(record).items() if k != "id"} | {"event": "sqlalchemy"}
        await tx._conn.execute(insert(audit_events), row)
    async with store.read() as tx:
        found = {r.event: r for r in await tx.audit_events()}
    assert replace(found["refresh"], id=None) == record
    assert replace(found["sqlalchemy"], id=None, event="refresh") == record


async def test_only_sqlite_skips_sqlalchemys_execution(store: Store) -> None:
    """On SQLite no statement goes through SQLAlchemy's cursor execution; on PostgreSQL it all does."""
    _, s = await seed(store)
    executed: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        executed.append(statement)

    event.listen(store.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        async with store.read() as tx:
            assert await tx.session_and_user(s.id) is not None
    finally:
        event.remove(store.db.engine.sync_engine, "before_cursor_execute", count)
    assert len([sql for sql in executed if "FROM sessions JOIN users" in sql]) == (0 if store.db.is_sqlite else 1)


async def test_a_driver_error_is_sqlalchemys_and_an_outage_of_the_store(store: Store) -> None:
    """A failing statement raises SQLAlchemy's ``DBAPIError`` (whose message shows no values), which
    the store answers as it answers any database failure: ``Unavailable``."""
    missing = Table("no_such_table", MetaData(), Column("id", Uuid))
    direct = Direct(select(missing).where(missing.c.id == bindparam("id")))
    secret = uuid.uuid4()
    with pytest.raises(Unavailable) as raised:
        async with store.read() as tx:
            await direct.first(tx._conn, {"id": secret})
    cause = raised.value.__cause__
    assert isinstance(cause, DBAPIError)
    assert "no_such_table" in str(cause)
    assert secret.hex not in str(cause)
    assert str(secret) not in str(cause)


async def test_rotation_rolled_back_with_its_writer_leaves_nothing(store: Store) -> None:
    """A rotation run on the driver is part of the writer's transaction: undone when it fails."""
    _, s = await seed(store)
    inside = bounds(NOW + timedelta(minutes=1), rotated_after=NOW - timedelta(seconds=1), created_from=NOW)

    async def rotate_then_fail() -> None:
        async with store.write() as tx:
            assert await tx.rotate_current(s.id, 0, inside) is not None
            raise RuntimeError("after the rotation")

    with pytest.raises(RuntimeError, match="after the rotation"):
        await rotate_then_fail()
    async with store.read() as tx:
        row = await tx.session(s.id)
    assert row is not None
    assert row.generation == 0
