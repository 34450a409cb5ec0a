"""The queries on accounts' email addresses and the single-use links mailed to them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ._queries import Queries, values
from .records import EmailTokenRecord, UserRecord
from .schema import email_tokens, users

__all__ = ["EmailQueries"]


class EmailQueries(Queries):
    async def user_by_email(self, email_key: str) -> UserRecord | None:
        row = (await self._conn.execute(select(users).where(users.c.email_key == email_key))).first()
        return None if row is None else UserRecord(**row._asdict())

    async def set_email(self, user_id: uuid.UUID, email: str | None, email_key: str | None) -> bool:
        """Give the user this address, unverified (None: no address); False when another account
        has it (the unique key decides, so two accounts racing for one address cannot both win)."""
        stmt = update(users).where(users.c.id == user_id)
        stmt = stmt.values(email=email, email_key=email_key, email_verified_at=None)
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(stmt)
        except IntegrityError:  # the address's unique key: the only constraint this statement can break
            return False
        return True

    async def mark_email_verified(self, user_id: uuid.UUID, email_key: str, now: datetime) -> bool:
        """Verify the user's address if it is still ``email_key`` (a link is bound to its address)."""
        stmt = update(users).where(users.c.id == user_id, users.c.email_key == email_key).values(email_verified_at=now)
        return (await self._conn.execute(stmt)).rowcount == 1

    async def insert_email_token(self, token: EmailTokenRecord) -> None:
        await self._conn.execute(insert(email_tokens).values(**values(token)))

    async def use_email_token(self, mac: str, purpose: str, now: datetime) -> EmailTokenRecord | None:
        """Use a link once: mark it used if it is unused and unexpired, in one statement, and return
        it; None for anything else (so of two concurrent uses, one wins)."""
        stmt = (
            update(email_tokens)
            .where(
                email_tokens.c.mac == mac,
                email_tokens.c.purpose == purpose,
                email_tokens.c.used_at.is_(None),
                email_tokens.c.expires_at > now,
            )
            .values(used_at=now)
            .returning(*email_tokens.c)
        )
        row = (await self._conn.execute(stmt)).first()
        return None if row is None else EmailTokenRecord(**row._asdict())

    async def retire_email_tokens(self, user_id: uuid.UUID, purpose: str, now: datetime) -> None:
        """Mark every unused link of this purpose used (a newer one, a reset, a changed address)."""
        stmt = update(email_tokens).where(
            email_tokens.c.user_id == user_id, email_tokens.c.purpose == purpose, email_tokens.c.used_at.is_(None)
        )
        await self._conn.execute(stmt.values(used_at=now))

    async def prune_email_tokens(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` links that expired before ``before`` (used ones too: they expire)."""
        batch = select(email_tokens.c.mac).where(email_tokens.c.expires_at < before).limit(limit)
        batch = batch.with_for_update(skip_locked=True)
        return (await self._conn.execute(delete(email_tokens).where(email_tokens.c.mac.in_(batch)))).rowcount
