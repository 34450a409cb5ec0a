"""The queries on accounts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from ...core.errors import UsernameTaken
from ._direct import Direct
from ._queries import Queries, values
from .records import UserRecord
from .schema import users

__all__ = ["USER_BY_KEY", "UserQueries", "user_of"]


class UserQueries(Queries):
    async def insert_user(self, user: UserRecord) -> bool:
        """Insert the account; False, and nothing inserted, when another account has its address.

        Raises:
            UsernameTaken: the normalized name exists.
        """
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(insert(users).values(**values(user)))
        except IntegrityError:
            if user.email_key is None or await self.user_by_key(user.username_key) is not None:
                raise UsernameTaken() from None
            return False
        return True

    async def user_by_key(self, username_key: str) -> UserRecord | None:
        return user_of(await USER_BY_KEY.first(self._conn, {"key": username_key}))

    async def lock_user(self, user_id: uuid.UUID) -> UserRecord | None:
        """The user's row, locked until this transaction ends (``FOR UPDATE``; on SQLite the write
        transaction already excludes every other writer). Every write that depends on the user's
        password, roles or enabled state takes this lock first, so such writes are serialised."""
        return user_of(await _LOCK_USER.first(self._conn, {"uid": user_id}))

    async def list_users(self, limit: int = 1000) -> list[UserRecord]:
        rows = await self._conn.execute(select(users).order_by(users.c.created_at).limit(limit))
        return [UserRecord(**r._asdict()) for r in rows]

    async def set_password_hash(
        self, user_id: uuid.UUID, password_hash: str, now: datetime | None, *, replacing: str
    ) -> bool:
        """Replace the hash ``replacing`` (the one a password was checked against) with
        ``password_hash``; False, and nothing written, when the stored hash is another one."""
        changes: dict[str, Any] = {"password_hash": password_hash}
        if now is not None:
            changes["password_changed_at"] = now
        stmt = update(users).where(users.c.id == user_id, users.c.password_hash == replacing).values(**changes)
        return (await self._conn.execute(stmt)).rowcount == 1

    async def set_roles(self, user_id: uuid.UUID, roles: str) -> None:
        await self._conn.execute(update(users).where(users.c.id == user_id).values(roles=roles))

    async def enable_user(self, user_id: uuid.UUID) -> bool:
        stmt = update(users).where(users.c.id == user_id, users.c.disabled_at.is_not(None)).values(disabled_at=None)
        return (await self._conn.execute(stmt)).rowcount == 1

    async def disable_user(self, user_id: uuid.UUID, now: datetime) -> bool:
        stmt = update(users).where(users.c.id == user_id, users.c.disabled_at.is_(None)).values(disabled_at=now)
        return (await self._conn.execute(stmt)).rowcount == 1


def user_of(found: dict[str, Any] | None) -> UserRecord | None:
    """The record of a row of ``USER_BY_KEY``."""
    return None if found is None else UserRecord(**found)


# Built once: building a statement and its cache key costs more than SQLite takes to run it.
USER_BY_KEY = Direct(select(users).where(users.c.username_key == bindparam("key")))  # a sign-in's first read
_LOCK_USER = Direct(select(users).where(users.c.id == bindparam("uid")).with_for_update())  # and a sign-in's write
