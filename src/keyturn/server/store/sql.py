"""Every query keyturn makes, as methods of one transaction (``Tx``); the store facade that opens it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ...core.sessions import SessionBounds
from ._clients import ClientQueries
from ._direct import Direct
from ._emails import EmailQueries
from ._outbox import OutboxQueries
from ._queries import values
from ._revocations import RevocationQueries
from ._sessions import (
    AUDITED,
    ROTATE_AND_AUDIT,
    SESSION_AND_USER,
    SessionQueries,
    current_rotation,
    rotated_of,
    session_and_user_of,
)
from ._users import USER_BY_KEY, UserQueries, user_of
from .engine import Database, advisory_lock
from .records import AuditRecord, KeyRecord, SessionRecord, Standing, UserRecord
from .schema import audit_events, signing_keys

__all__ = ["Store", "Tx"]


class Store:
    """The storage facade: open a transaction, call its methods."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.on_publish: Callable[[], None] | None = None
        """Called once a write transaction that ended sessions has committed (the feed's watcher)."""

    @classmethod
    def open(
        cls, url: str, *, timeout: timedelta = timedelta(seconds=5), pool_size: int = 10, max_overflow: int = 10
    ) -> Store:
        return cls(Database(url, timeout=timeout, pool_size=pool_size, max_overflow=max_overflow))

    @asynccontextmanager
    async def read(self, *, scan: bool = False) -> AsyncIterator[Tx]:
        """A read-only transaction; ``scan`` for statements that read many rows (see ``Database.read``)."""
        async with self.db.read(scan=scan) as conn:
            yield Tx(conn)

    async def session_and_user(self, session_id: uuid.UUID) -> tuple[SessionRecord, UserRecord] | None:
        """A session and its user, read on their own (the check behind every authenticated
        request): on SQLite on this event loop's reader (``_sqlite.Readers``), with no connection
        from the pool and no transaction to open; on PostgreSQL as one statement in autocommit."""
        return session_and_user_of(await self._point_read(SESSION_AND_USER, {"sid": session_id}))

    async def user_by_key(self, username_key: str) -> UserRecord | None:
        """A user by normalized name, read on its own (a sign-in's first step), as
        ``session_and_user`` reads."""
        return user_of(await self._point_read(USER_BY_KEY, {"key": username_key}))

    async def rotate_alone(
        self, session_id: uuid.UUID, generation: int, bounds: SessionBounds, audit: AuditRecord
    ) -> tuple[SessionRecord, Standing, AuditRecord] | None:
        """``Tx.rotate_current`` and the rotation's audit row (``audit``, with the user and session
        of the row rotated) as a unit of work of their own: on PostgreSQL one statement that
        commits as it runs (one round trip), on SQLite a writer of the group commit. Returns the
        rotated row, the user's standing and the audit row as written; None, and nothing written,
        when the session is not in the state to rotate."""
        if self.db.is_sqlite:
            async with self.write() as tx:
                found = await tx.rotate_current(session_id, generation, bounds)
                if found is None:
                    return None
                written = _as_written(audit, found[0])
                await tx.audit(written)
            return found[0], found[1], written
        row = values(audit)
        params = {**current_rotation(session_id, generation, bounds), **{f"audit_{c}": row[c] for c in AUDITED}}
        async with self._alone() as conn:
            found_row = (await conn.execute(ROTATE_AND_AUDIT, params)).first()
        rotated = rotated_of(None if found_row is None else found_row._asdict())
        return None if rotated is None else (rotated[0], rotated[1], _as_written(audit, rotated[0]))

    async def _point_read(self, statement: Direct, params: dict[str, Any]) -> dict[str, Any] | None:
        if self.db.readers is None:
            async with self._alone() as conn:
                return await statement.first(conn, params)
        async with self.db.guard():
            reader = await self.db.readers.get()
            return statement.first_on(reader, self.db.engine.dialect, params)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        async with self.db.write() as conn:
            tx = Tx(conn)
            yield tx
            if await tx.publish_ended() and self.on_publish is not None:
                tx.committed.append(self.on_publish)  # readers of the feed may be told at once
        for then in tx.committed:  # committed: what waited for the commit runs
            then()

    @asynccontextmanager
    async def _alone(self) -> AsyncIterator[AsyncConnection]:
        """PostgreSQL: a pooled connection whose statements each commit as they run, so one
        statement is one round trip, with no ``BEGIN`` and ``COMMIT`` around it."""
        async with self.db.guard(), self.db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    async def close(self) -> None:
        await self.db.dispose()


class Tx(UserQueries, EmailQueries, SessionQueries, RevocationQueries, ClientQueries, OutboxQueries):
    """One open transaction: the queries on accounts (``_users.py``), on sessions
    (``_sessions.py``), on the revocation feed (``_revocations.py``), on OAuth clients
    (``_clients.py``), on the mail outbox (``_outbox.py``), and these on signing keys
    and the audit log."""

    async def lock(self, name: str) -> None:
        """Serialize this transaction with every other one that takes ``name`` (all processes)."""
        await advisory_lock(self._conn, name)

    # signing keys

    async def signing_keys(self) -> list[KeyRecord]:
        order = (signing_keys.c.activates_at, signing_keys.c.created_at)
        rows = await self._conn.execute(select(signing_keys).order_by(*order))
        return [KeyRecord(**r._asdict()) for r in rows]

    async def insert_key(self, key: KeyRecord) -> None:
        await self._conn.execute(insert(signing_keys).values(**values(key)))

    # audit

    async def audit(self, record: AuditRecord) -> None:
        row = values(record)
        row.pop("id")
        await _INSERT_AUDIT.execute(self._conn, row)

    async def audit_events(
        self,
        *,
        user_id: uuid.UUID | None = None,
        events: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Audit rows, newest first: of one user, of some events, at or after ``since``, before ``until``."""
        # By time, not id: instances commit in their own order; the id only breaks ties.
        order = (audit_events.c.at.desc(), audit_events.c.id.desc())
        stmt = select(audit_events).order_by(*order).limit(limit)
        if user_id is not None:
            stmt = stmt.where(audit_events.c.user_id == user_id)
        if events:
            stmt = stmt.where(audit_events.c.event.in_(events))
        if since is not None:
            stmt = stmt.where(audit_events.c.at >= since)
        if until is not None:
            stmt = stmt.where(audit_events.c.at < until)
        return [AuditRecord(**r._asdict()) for r in await self._conn.execute(stmt)]

    async def prune_audit_events(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` audit rows older than ``before`` (skipping rows held elsewhere)."""
        batch = select(audit_events.c.id).where(audit_events.c.at < before).limit(limit)
        batch = batch.with_for_update(skip_locked=True)
        return (await self._conn.execute(delete(audit_events).where(audit_events.c.id.in_(batch)))).rowcount


# Built once, like the statements of ``_sessions.py``, and run on SQLite's driver directly: every
# sign-in, refresh and logout writes an audit row.
_INSERT_AUDIT = Direct(insert(audit_events))


def _as_written(audit: AuditRecord, session: SessionRecord) -> AuditRecord:
    """``audit`` as a rotation writes it: of the rotated session and its user."""
    return replace(audit, user_id=session.user_id, session_id=session.id)
