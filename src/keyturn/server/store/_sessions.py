"""The queries on sessions. Which sessions are live is decided in one place, the core's
``SessionBounds``: every statement here that asks it (rotation, listing, counting, pruning) is
built from those bounds, column by column, and ``tests/core/test_sessions.py`` checks that the
bounds agree with the rule to the microsecond."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, delete, exists, func, insert, or_, select, update

from ...core.sessions import SessionBounds
from ._direct import Direct
from ._queries import Queries, values
from .records import SessionRecord, Standing, UserRecord
from .schema import audit_events, sessions, users

__all__ = [
    "AUDITED",
    "ROTATE_AND_AUDIT",
    "SESSION_AND_USER",
    "SessionQueries",
    "current_rotation",
    "rotated_of",
    "session_and_user_of",
]


class SessionQueries(Queries):
    async def insert_session(self, session: SessionRecord) -> None:
        await _INSERT_SESSION.execute(self._conn, values(session))

    async def session(self, session_id: uuid.UUID) -> SessionRecord | None:
        row = (await self._conn.execute(_SESSION, {"sid": session_id})).first()
        return None if row is None else SessionRecord(**row._asdict())

    async def session_and_user(self, session_id: uuid.UUID) -> tuple[SessionRecord, UserRecord] | None:
        """A session and its user in one query (the check behind every authenticated request)."""
        return session_and_user_of(await SESSION_AND_USER.first(self._conn, {"sid": session_id}))

    async def rotate_session(
        self, session_id: uuid.UUID, generation: int, now: datetime, *, to: int | None = None
    ) -> bool:
        """Compare-and-swap ``generation`` to ``to`` (default ``generation + 1``); False if another
        caller won."""
        params = _rotation(session_id, generation, now, generation + 1 if to is None else to)
        return (await self._conn.execute(_ROTATE, params)).rowcount == 1

    async def rotate_current(
        self, session_id: uuid.UUID, generation: int, bounds: SessionBounds
    ) -> tuple[SessionRecord, Standing] | None:
        """Move a session at ``generation`` one generation on at ``bounds.now``, in one statement,
        if the refresh rule lets its current token rotate: unrevoked, user enabled, within both
        lifetimes with a whole second left. Returns the new row and the user's standing as it is
        now, or None when the session is not in that state (the caller then reads it and decides)."""
        return rotated_of(await _ROTATE_CURRENT.first(self._conn, current_rotation(session_id, generation, bounds)))

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
        tokens_until: datetime,
        only: uuid.UUID | None = None,
        keep: uuid.UUID | None = None,
    ) -> list[uuid.UUID]:
        """Revoke the user's unrevoked sessions (just ``only``, or all but ``keep``); returns the ids
        of those this call revoked. One statement: a session revoked by a concurrent transaction is
        neither revoked again (its time and reason stay) nor returned (so not audited twice).

        Each one revoked goes into the revocation feed with this transaction: its access tokens
        are refused by resource servers until ``tokens_until``, the latest expiry any of them has.
        """
        where = [sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None)]
        if only is not None:
            where.append(sessions.c.id == only)
        if keep is not None:
            where.append(sessions.c.id != keep)
        stmt = update(sessions).where(*where).values(revoked_at=now, revoke_reason=reason).returning(sessions.c.id)
        ended = list((await self._conn.execute(stmt)).scalars())
        self.end_later(ended, now, tokens_until, reason)
        return ended

    async def rename_session(
        self, session_id: uuid.UUID, user_id: uuid.UUID, device_name: str | None, bounds: SessionBounds
    ) -> SessionRecord | None:
        """Set the device name of the user's session ``session_id`` if it is live within ``bounds``,
        in one statement; the renamed row, or None when the user has no such live session."""
        stmt = (
            update(sessions)
            .where(sessions.c.id == session_id, sessions.c.user_id == user_id, _live(bounds))
            .values(device_name=device_name)
            .returning(*sessions.c)
        )
        row = (await self._conn.execute(stmt)).first()
        return None if row is None else SessionRecord(**row._asdict())

    async def live_sessions(
        self, user_id: uuid.UUID | None, bounds: SessionBounds, limit: int = 100
    ) -> list[SessionRecord]:
        """Sessions live within ``bounds`` (of one user, or of all), most recently used first."""
        stmt = select(sessions).where(_live(bounds))
        if user_id is not None:
            stmt = stmt.where(sessions.c.user_id == user_id)
        rows = await self._conn.execute(stmt.order_by(sessions.c.last_used_at.desc()).limit(limit))
        return [SessionRecord(**r._asdict()) for r in rows]

    async def count_live_sessions(self, bounds: SessionBounds) -> int:
        """How many sessions are live within ``bounds``."""
        stmt = select(func.count()).select_from(sessions).where(_live(bounds))
        return int((await self._conn.execute(stmt)).scalar_one())

    async def prune_sessions(self, dead_at: SessionBounds, *, limit: int) -> int:
        """Delete up to ``limit`` sessions that were already dead at ``dead_at.now`` (revoked
        before it, or no longer live within its bounds); rows another transaction holds are
        skipped, not waited for."""
        dead = or_(sessions.c.revoked_at < dead_at.now, ~_live_times(dead_at))
        batch = select(sessions.c.id).where(dead).limit(limit).with_for_update(skip_locked=True)
        return (await self._conn.execute(delete(sessions).where(sessions.c.id.in_(batch)))).rowcount


def session_and_user_of(found: dict[str, Any] | None) -> tuple[SessionRecord, UserRecord] | None:
    """The records of a row of ``SESSION_AND_USER``."""
    if found is None:
        return None
    user = UserRecord(id=found["user_id"], **{name: found.pop(label) for name, label in _USER_LABELS})
    return SessionRecord(**found), user


def _live_times(bounds: SessionBounds) -> ColumnElement[bool]:
    """``SessionBounds.is_live``'s lifetime rules as SQL on the row's columns."""
    return and_(sessions.c.rotated_at > bounds.rotated_after, sessions.c.created_at >= bounds.created_from)


def _live(bounds: SessionBounds) -> ColumnElement[bool]:
    """``SessionBounds.is_live`` as SQL. The user's enabled state needs no join here: disabling a
    user revokes its sessions in the same transaction."""
    return and_(sessions.c.revoked_at.is_(None), _live_times(bounds))


def current_rotation(session_id: uuid.UUID, generation: int, bounds: SessionBounds) -> dict[str, Any]:
    """The parameters of ``_ROTATE_CURRENT`` (and ``ROTATE_AND_AUDIT``)."""
    return {
        **_rotation(session_id, generation, bounds.now, generation + 1),
        "rotated_after": bounds.rotated_after,
        "created_from": bounds.refresh_created_from,
    }


def rotated_of(found: dict[str, Any] | None) -> tuple[SessionRecord, Standing] | None:
    """The records of a row of ``_ROTATE_CURRENT`` (or ``ROTATE_AND_AUDIT``)."""
    if found is None:
        return None
    standing = Standing(found.pop("user_roles"), found.pop("user_verified_at") is not None)
    return SessionRecord(**found), standing


def _rotation(session_id: uuid.UUID, generation: int, now: datetime, to: int) -> dict[str, Any]:
    """The parameters of ``_ROTATE``: ``generation`` to ``to`` at ``now``."""
    return {"sid": session_id, "gen": generation, "next": to, "at": now}


# The statements behind every sign-in, refresh and authenticated request, built once: building a
# statement and its cache key costs more than SQLite takes to run it. Values go in as parameters;
# the two behind every request and refresh run on SQLite's driver directly (``_direct``).
_INSERT_SESSION = Direct(insert(sessions))
_SESSION = select(sessions).where(sessions.c.id == bindparam("sid"))
# The user's columns but its id, which is the session's user_id (the join's condition).
_USER_LABELS = tuple((c.name, f"u_{c.name}") for c in users.c if c is not users.c.id)
SESSION_AND_USER = Direct(
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
_USER_ENABLED = exists().where(users.c.id == sessions.c.user_id, users.c.disabled_at.is_(None)).correlate(sessions)
_USER_ROLES = select(users.c.roles).where(users.c.id == sessions.c.user_id).correlate(sessions).scalar_subquery()
_USER_VERIFIED = (
    select(users.c.email_verified_at).where(users.c.id == sessions.c.user_id).correlate(sessions).scalar_subquery()
)
# SessionBounds' refresh rule, as bound parameters: rotated_after and refresh_created_from.
_ROTATE_CURRENT = Direct(
    _ROTATE.where(
        sessions.c.rotated_at > bindparam("rotated_after"),
        sessions.c.created_at >= bindparam("created_from"),
        _USER_ENABLED,
    ).returning(*sessions.c, _USER_ROLES.label("user_roles"), _USER_VERIFIED.label("user_verified_at"))
)
_ROTATED = _ROTATE_CURRENT.statement.cte("rotated")
AUDITED = ("at", "event", "outcome", "ip", "user_agent", "detail")
"""The audit row's columns that ``ROTATE_AND_AUDIT`` takes as parameters (``audit_<column>``)."""
# PostgreSQL: the rotation and its audit row in one statement, which commits on its own (one round
# trip, where a transaction takes four); the row is written only if the session rotated.
ROTATE_AND_AUDIT = select(_ROTATED).add_cte(
    insert(audit_events)
    .from_select(
        [*AUDITED, "user_id", "session_id"],
        select(
            *(bindparam(f"audit_{name}", type_=audit_events.c[name].type) for name in AUDITED),
            _ROTATED.c.user_id,
            _ROTATED.c.id,
        ),
    )
    .cte("audited")
)
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
