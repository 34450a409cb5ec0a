"""Every query keyturn makes, as methods of one transaction (``Tx``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ...core.errors import UsernameTaken
from .engine import Database, advisory_lock
from .records import AuditRecord, KeyRecord, SessionRecord, UserRecord
from .schema import audit_events, sessions, signing_keys, users

__all__ = ["Store", "Tx"]


class Store:
    """The storage facade: open a transaction, call its methods."""

    def __init__(self, db: Database) -> None:
        self.db = db

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

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        async with self.db.write() as conn:
            yield Tx(conn)

    async def close(self) -> None:
        await self.db.dispose()


class Tx:
    """One open transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def lock(self, name: str) -> None:
        """Serialize this transaction with every other one that takes ``name`` (all processes)."""
        await advisory_lock(self._conn, name)

    # users

    async def insert_user(self, user: UserRecord) -> None:
        """Raises ``UsernameTaken`` when the normalized name exists."""
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(insert(users).values(**_values(user)))
        except IntegrityError:
            raise UsernameTaken() from None

    async def user_by_key(self, username_key: str) -> UserRecord | None:
        return _user((await self._conn.execute(_USER_BY_KEY, {"key": username_key})).first())

    async def user_by_id(self, user_id: uuid.UUID) -> UserRecord | None:
        row = (await self._conn.execute(select(users).where(users.c.id == user_id))).first()
        return _user(row)

    async def lock_user(self, user_id: uuid.UUID) -> UserRecord | None:
        """The user's row, locked until this transaction ends (``FOR UPDATE``; on SQLite the write
        transaction already excludes every other writer). Every write that depends on the user's
        password, roles or enabled state takes this lock first, so such writes are serialised."""
        return _user((await self._conn.execute(_LOCK_USER, {"uid": user_id})).first())

    async def list_users(self, limit: int = 1000) -> list[UserRecord]:
        rows = await self._conn.execute(select(users).order_by(users.c.created_at).limit(limit))
        return [UserRecord(**r._asdict()) for r in rows]

    async def set_password_hash(
        self, user_id: uuid.UUID, password_hash: str, now: datetime | None, *, replacing: str
    ) -> bool:
        """Replace the hash ``replacing`` (the one a password was checked against) with
        ``password_hash``; False, and nothing written, when the stored hash is another one."""
        values: dict[str, Any] = {"password_hash": password_hash}
        if now is not None:
            values["password_changed_at"] = now
        stmt = update(users).where(users.c.id == user_id, users.c.password_hash == replacing).values(**values)
        return (await self._conn.execute(stmt)).rowcount == 1

    async def set_roles(self, user_id: uuid.UUID, roles: str) -> None:
        await self._conn.execute(update(users).where(users.c.id == user_id).values(roles=roles))

    async def disable_user(self, user_id: uuid.UUID, now: datetime) -> bool:
        stmt = update(users).where(users.c.id == user_id, users.c.disabled_at.is_(None)).values(disabled_at=now)
        return (await self._conn.execute(stmt)).rowcount == 1

    # sessions

    async def insert_session(self, session: SessionRecord) -> None:
        await self._conn.execute(_INSERT_SESSION, _values(session))

    async def session(self, session_id: uuid.UUID) -> SessionRecord | None:
        row = (await self._conn.execute(_SESSION, {"sid": session_id})).first()
        return None if row is None else SessionRecord(**row._asdict())

    async def session_and_user(self, session_id: uuid.UUID) -> tuple[SessionRecord, UserRecord] | None:
        """A session and its user in one query (the check behind every authenticated request)."""
        row = (await self._conn.execute(_SESSION_AND_USER, {"sid": session_id})).first()
        if row is None:
            return None
        values = row._asdict()
        user = UserRecord(**{name: values.pop(label) for name, label in _USER_LABELS})
        return SessionRecord(**values), user

    async def rotate_session(
        self, session_id: uuid.UUID, generation: int, now: datetime, *, to: int | None = None
    ) -> bool:
        """Compare-and-swap ``generation`` to ``to`` (default ``generation + 1``); False if another
        caller won."""
        params = _rotation(session_id, generation, now, generation + 1 if to is None else to)
        return (await self._conn.execute(_ROTATE, params)).rowcount == 1

    async def rotate_current(
        self, session_id: uuid.UUID, generation: int, now: datetime, *, rotated_after: datetime, created_from: datetime
    ) -> tuple[SessionRecord, str] | None:
        """Move a live session at ``generation`` of an enabled user, rotated after ``rotated_after``
        and created at or after ``created_from``, one generation on, in one statement; returns the
        new row and the user's roles, or None when the session is not in that state (the caller
        then reads it and decides)."""
        params = {
            **_rotation(session_id, generation, now, generation + 1),
            "rotated_after": rotated_after,
            "created_from": created_from,
        }
        row = (await self._conn.execute(_ROTATE_CURRENT, params)).first()
        if row is None:
            return None
        values = row._asdict()
        roles: str = values.pop("user_roles")
        return SessionRecord(**values), roles

    async def charge_password_attempt(self, session_id: uuid.UUID, limit: int) -> bool:
        """Count one password check against a live session, atomically, unless it has been charged
        ``limit`` times since its last successful check; False when nothing was charged."""
        params = {"sid": session_id, "limit": limit}
        return (await self._conn.execute(_CHARGE_PASSWORD_ATTEMPT, params)).first() is not None

    async def clear_password_attempts(self, session_id: uuid.UUID) -> None:
        await self._conn.execute(update(sessions).where(sessions.c.id == session_id).values(password_attempts=0))

    async def revoke_sessions(
        self,
        user_id: uuid.UUID,
        now: datetime,
        reason: str,
        *,
        only: uuid.UUID | None = None,
        keep: uuid.UUID | None = None,
    ) -> list[uuid.UUID]:
        """Revoke the user's live sessions (just ``only``, or all but ``keep``); returns the ids of
        those this call revoked. One statement: a session revoked by a concurrent transaction is
        neither revoked again (its time and reason stay) nor returned (so not audited twice)."""
        where = [sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None)]
        if only is not None:
            where.append(sessions.c.id == only)
        if keep is not None:
            where.append(sessions.c.id != keep)
        stmt = update(sessions).where(*where).values(revoked_at=now, revoke_reason=reason).returning(sessions.c.id)
        return list((await self._conn.execute(stmt)).scalars())

    async def live_sessions(
        self, user_id: uuid.UUID | None, not_before: datetime, limit: int = 100
    ) -> list[SessionRecord]:
        """Unrevoked sessions created after ``not_before``, most recently used first."""
        stmt = select(sessions).where(sessions.c.revoked_at.is_(None), sessions.c.created_at > not_before)
        if user_id is not None:
            stmt = stmt.where(sessions.c.user_id == user_id)
        rows = await self._conn.execute(stmt.order_by(sessions.c.last_used_at.desc()).limit(limit))
        return [SessionRecord(**r._asdict()) for r in rows]

    # signing keys

    async def signing_keys(self) -> list[KeyRecord]:
        order = (signing_keys.c.activates_at, signing_keys.c.created_at)
        rows = await self._conn.execute(select(signing_keys).order_by(*order))
        return [KeyRecord(**r._asdict()) for r in rows]

    async def insert_key(self, key: KeyRecord) -> None:
        await self._conn.execute(insert(signing_keys).values(**_values(key)))

    async def retire_key(self, kid: str, now: datetime) -> bool:
        stmt = update(signing_keys).where(signing_keys.c.kid == kid, signing_keys.c.retired_at.is_(None))
        return (await self._conn.execute(stmt.values(retired_at=now))).rowcount == 1

    # audit

    async def audit(self, record: AuditRecord) -> None:
        values = _values(record)
        values.pop("id")
        await self._conn.execute(_INSERT_AUDIT, values)

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

    # pruning

    async def prune_sessions(self, *, revoked_before: datetime, rotated_before: datetime, created_before: datetime,
                             limit: int) -> int:  # fmt: skip
        """Delete up to ``limit`` sessions revoked, idle or past their lifetime before the given
        times; rows another transaction holds are skipped, not waited for."""
        dead = or_(
            sessions.c.revoked_at < revoked_before,
            sessions.c.rotated_at < rotated_before,
            sessions.c.created_at < created_before,
        )
        batch = select(sessions.c.id).where(dead).limit(limit).with_for_update(skip_locked=True)
        return (await self._conn.execute(delete(sessions).where(sessions.c.id.in_(batch)))).rowcount

    async def prune_audit_events(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` audit rows older than ``before`` (skipping rows held elsewhere)."""
        batch = select(audit_events.c.id).where(audit_events.c.at < before).limit(limit)
        batch = batch.with_for_update(skip_locked=True)
        return (await self._conn.execute(delete(audit_events).where(audit_events.c.id.in_(batch)))).rowcount

    async def count_live_sessions(self, now: datetime, *, idle: timedelta, absolute: timedelta) -> int:
        """Sessions that are not revoked and, at ``now``, not past their idle expiry (``rotated_at
        + idle``) or absolute expiry (``created_at + absolute``)."""
        stmt = (
            select(func.count())
            .select_from(sessions)
            .where(
                sessions.c.revoked_at.is_(None),
                sessions.c.rotated_at > now - idle,
                sessions.c.created_at > now - absolute,
            )
        )
        return int((await self._conn.execute(stmt)).scalar_one())

    async def count(self, table: str) -> int:
        target = {"users": users, "sessions": sessions, "audit_events": audit_events}[table]
        return int((await self._conn.execute(select(func.count()).select_from(target))).scalar_one())


def _rotation(session_id: uuid.UUID, generation: int, now: datetime, to: int) -> dict[str, Any]:
    """The parameters of ``_ROTATE``: ``generation`` to ``to`` at ``now``."""
    return {"sid": session_id, "gen": generation, "next": to, "at": now}


def _values(record: Any) -> dict[str, Any]:
    """A record's fields by name (``dataclasses.asdict`` deep-copies every value: far slower)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


def _user(row: Row[Any] | None) -> UserRecord | None:
    return None if row is None else UserRecord(**row._asdict())


# The statements behind every sign-in, refresh and authenticated request, built once: building a
# statement and its cache key costs more than SQLite takes to run it. Values go in as parameters.
_USER_BY_KEY = select(users).where(users.c.username_key == bindparam("key"))
_INSERT_SESSION = insert(sessions)
_INSERT_AUDIT = insert(audit_events)
_SESSION = select(sessions).where(sessions.c.id == bindparam("sid"))
_USER_LABELS = tuple((c.name, f"u_{c.name}") for c in users.c)
_SESSION_AND_USER = (
    select(sessions, *(users.c[name].label(label) for name, label in _USER_LABELS))
    .join(users, users.c.id == sessions.c.user_id)
    .where(sessions.c.id == bindparam("sid"))
)
_ROTATE = (
    update(sessions)
    .where(
        sessions.c.id == bindparam("sid"), sessions.c.generation == bindparam("gen"), sessions.c.revoked_at.is_(None)
    )
    .values(generation=bindparam("next"), rotated_at=bindparam("at"), last_used_at=bindparam("at"))
)
_LOCK_USER = select(users).where(users.c.id == bindparam("uid")).with_for_update()
_USER_ENABLED = exists().where(users.c.id == sessions.c.user_id, users.c.disabled_at.is_(None)).correlate(sessions)
_USER_ROLES = select(users.c.roles).where(users.c.id == sessions.c.user_id).correlate(sessions).scalar_subquery()
_ROTATE_CURRENT = _ROTATE.where(
    sessions.c.rotated_at > bindparam("rotated_after"),
    sessions.c.created_at >= bindparam("created_from"),
    _USER_ENABLED,
).returning(*sessions.c, _USER_ROLES.label("user_roles"))
_CHARGE_PASSWORD_ATTEMPT = (
    update(sessions)
    .where(
        sessions.c.id == bindparam("sid"),
        sessions.c.revoked_at.is_(None),
        sessions.c.password_attempts < bindparam("limit"),
    )
    .values(password_attempts=sessions.c.password_attempts + 1)
    .returning(sessions.c.password_attempts)
)
