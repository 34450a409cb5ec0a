"""The queries on the mail outbox (``keyturn.core.mail``).

A message is inserted in the transaction that decides to send it, so a rolled-back sign-up sends
nothing and a committed one loses nothing. Senders claim due messages with a lease, one
conditional ``UPDATE`` per message: of two instances claiming the same message, one wins; a
sender that dies mid-send lets the lease run out, and another sends the message then.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, update

from ._queries import Queries, values
from .records import OutboxRecord
from .schema import outbox

__all__ = ["OutboxQueries"]


class OutboxQueries(Queries):
    async def enqueue(self, message: OutboxRecord) -> None:
        await self._conn.execute(insert(outbox).values(**values(message)))

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[OutboxRecord]:
        """Claim up to ``limit`` messages due at ``now`` (unsent, not given up, unleased or lease
        run out) until ``lease_until``; returns those this call won."""
        ids = await self._conn.execute(
            select(outbox.c.id).where(_claimable(now)).order_by(outbox.c.next_attempt_at).limit(limit)
        )
        claimed = []
        for (message_id,) in ids.all():
            stmt = update(outbox).where(outbox.c.id == message_id, _claimable(now)).values(lease_until=lease_until)
            row = (await self._conn.execute(stmt.returning(*outbox.c))).first()
            if row is not None:
                claimed.append(OutboxRecord(**row._asdict()))
        return claimed

    async def mark_sent(self, message_id: uuid.UUID, now: datetime) -> None:
        """Sent: the sealed message (and any link in it) is dropped; the row stays for pruning."""
        stmt = update(outbox).where(outbox.c.id == message_id)
        await self._conn.execute(stmt.values(sent_at=now, lease_until=None, sealed=b""))

    async def mark_failed(self, message_id: uuid.UUID, error: str, *, retry_at: datetime | None, now: datetime) -> None:
        """A failed attempt: try again at ``retry_at``, or (None) give up for good and drop the message."""
        changes: dict[str, object] = {"attempts": outbox.c.attempts + 1, "lease_until": None, "last_error": error[:200]}
        if retry_at is None:
            changes.update(failed_at=now, sealed=b"")
        else:
            changes["next_attempt_at"] = retry_at
        await self._conn.execute(update(outbox).where(outbox.c.id == message_id).values(**changes))

    async def outbox_waiting(self) -> int:
        """How many messages are neither sent nor given up."""
        stmt = select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None), outbox.c.failed_at.is_(None))
        return int((await self._conn.execute(stmt)).scalar_one())

    async def prune_outbox(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` messages sent or given up before ``before``."""
        done = or_(outbox.c.sent_at < before, outbox.c.failed_at < before)
        batch = select(outbox.c.id).where(done).limit(limit).with_for_update(skip_locked=True)
        return (await self._conn.execute(delete(outbox).where(outbox.c.id.in_(batch)))).rowcount


def _claimable(now: datetime) -> ColumnElement[bool]:
    return and_(
        outbox.c.sent_at.is_(None),
        outbox.c.failed_at.is_(None),
        outbox.c.next_attempt_at <= now,
        or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now),
    )
