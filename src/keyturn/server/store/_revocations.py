"""The queries on the revocation feed (``keyturn.core.revocations``).

Readers follow the feed by position (``id``), so a position must never become visible after a
larger one: a reader that saw 11 would skip 10 for good. On SQLite one writer at a time already
commits in position order. On PostgreSQL concurrent transactions commit in any order, so the
entries are written last in their transaction, after a transaction-scoped advisory lock: the next
writer takes its positions only once this one has committed (PostgreSQL makes a commit visible
before it releases the transaction's locks). Taking that lock last, after every row lock, means a
transaction holding it waits for nothing but its own commit: no deadlock with it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete, func, insert, select

from ...core.revocations import Revocation
from ._queries import Queries
from .engine import advisory_lock
from .schema import revocation_feed, revocations

__all__ = ["RevocationQueries"]


class RevocationQueries(Queries):
    async def publish_ended(self) -> bool:
        """Write the queued entries, last in the transaction (see the module's docstring); True
        if there were any."""
        if not self._ended:
            return False
        await advisory_lock(self._conn, "revocations")
        await self._conn.execute(insert(revocations), self._ended)
        self._ended = []
        return True

    async def feed_epoch(self) -> str:
        """This database's feed epoch (written by the migration that made the feed)."""
        return str((await self._conn.execute(select(revocation_feed.c.epoch).limit(1))).scalar_one())

    async def revocations_after(self, position: int, now: datetime, limit: int) -> tuple[list[Revocation], int, bool]:
        """The entries after ``position`` whose tokens may still verify at ``now``, in position
        order, from the next ``limit`` rows; the position those rows end at; and whether more
        rows may follow. Expired rows not yet pruned are read and passed over, so the position
        moves past them."""
        rows = (await self._conn.execute(_AFTER, {"after": position, "limit": limit})).all()
        entries = [Revocation.of(r.session_id, r.at, r.until, r.reason) for r in rows if r.until > now]
        return entries, rows[-1].id if rows else position, len(rows) == limit

    async def revocation_head(self) -> int:
        """The newest position (0 when the feed is empty): cheap, asked several times a second."""
        return int((await self._conn.execute(_HEAD)).scalar_one())

    async def prune_revocations(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` entries whose tokens all expired before ``before``."""
        batch = select(revocations.c.id).where(revocations.c.until < before).limit(limit)
        batch = batch.with_for_update(skip_locked=True)
        return (await self._conn.execute(delete(revocations).where(revocations.c.id.in_(batch)))).rowcount


_HEAD = select(func.coalesce(func.max(revocations.c.id), 0))
_AFTER = (
    select(revocations)
    .where(revocations.c.id > bindparam("after"))
    .order_by(revocations.c.id)
    .limit(bindparam("limit"))
)
