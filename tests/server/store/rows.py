"""What the store tests share: a clock point, lifetimes, and rows to insert."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from keyturn.core.sessions import Lifetimes, SessionBounds, SessionState
from keyturn.server.store import SessionRecord, Store, UserRecord

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
UNTIL = NOW + timedelta(minutes=15)  # tokens_until of a revocation at NOW (the feed keeps it so long)
LIFETIMES = Lifetimes(idle=timedelta(days=7), absolute=timedelta(days=30), grace=timedelta(seconds=10))


def bounds(now: datetime, *, rotated_after: datetime, created_from: datetime) -> SessionBounds:
    """Bounds at ``now`` given column by column (the refresh bound on created_at the same as the
    liveness one), to put a row exactly on either side of each."""
    return SessionBounds(now, rotated_after=rotated_after, created_from=created_from, refresh_created_from=created_from)


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


def state_of(row: SessionRecord) -> SessionState:
    return SessionState(row.id, row.user_id, row.generation, row.created_at, row.rotated_at, row.revoked_at)
