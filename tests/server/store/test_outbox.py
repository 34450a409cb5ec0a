"""Integration tests of keyturn.server.store._outbox (the mail outbox's queries) on a real SQLite
file and PostgreSQL database: which messages are due and in what order, claims as leases (won by
one claimer, taken over once run out), a sent message's body dropped, failures retried later or
given up, and pruning what is done."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from keyturn.server.store import OutboxRecord, Store
from keyturn.server.store.schema import outbox
from tests.server.store.rows import NOW

pytestmark = pytest.mark.anyio

LEASE = timedelta(minutes=2)
BODY = b"\x01sealed-message"


def message(due: datetime = NOW, *, created: datetime | None = None, kind: str = "verify") -> OutboxRecord:
    return OutboxRecord(uuid.uuid4(), BODY, kind, created or due, due)


async def enqueue(store: Store, *messages: OutboxRecord) -> None:
    async with store.write() as tx:
        for m in messages:
            await tx.enqueue(m)


async def claim(store: Store, now: datetime = NOW, limit: int = 100) -> list[OutboxRecord]:
    async with store.write() as tx:
        return await tx.claim_due(now, now + LEASE, limit)


async def waiting(store: Store) -> int:
    async with store.read() as tx:
        return await tx.outbox_waiting()


async def test_claim_due_takes_due_messages_oldest_due_first_up_to_the_limit(store: Store) -> None:
    """Messages due at or before now are claimed in next_attempt_at order, at most ``limit``; one
    due later is left; each claimed row comes back with its lease and body."""
    late, first, second, third = (message(NOW + timedelta(seconds=1)), message(NOW - timedelta(minutes=3)),
                                  message(NOW - timedelta(minutes=2)), message(NOW))  # fmt: skip
    await enqueue(store, third, late, second, first)
    claimed = await claim(store, limit=2)
    assert [m.id for m in claimed] == [first.id, second.id]
    assert all(m.lease_until == NOW + LEASE and m.sealed == BODY and m.attempts == 0 for m in claimed)
    assert [m.id for m in await claim(store)] == [third.id]  # exactly at now is due
    assert await claim(store) == []
    assert [m.id for m in await claim(store, NOW + timedelta(seconds=1))] == [late.id]


async def test_a_leased_message_is_not_claimed_again_until_the_lease_runs_out(store: Store) -> None:
    """A claim is a lease: no second claim up to lease_until (inclusive), a new claim after it."""
    m = message()
    await enqueue(store, m)
    assert len(await claim(store)) == 1
    assert await claim(store, NOW + LEASE - timedelta(seconds=1)) == []
    assert await claim(store, NOW + LEASE) == []
    (again,) = await claim(store, NOW + LEASE + timedelta(seconds=1))
    assert again.id == m.id
    assert again.lease_until == NOW + LEASE + timedelta(seconds=1) + LEASE


async def test_two_stores_claiming_at_once_each_win_different_messages(database_url: str, store: Store) -> None:
    """Two senders (two engines on one database) claiming together, round after round until
    nothing is left: every message is won by exactly one of them (a claim that loses a race for a
    row just returns fewer)."""
    messages = [message(NOW - timedelta(seconds=i)) for i in range(30)]
    await enqueue(store, *messages)
    other = Store.open(database_url)
    won: list[uuid.UUID] = []
    try:
        for _ in range(30):
            rounds = await asyncio.gather(*(claim(s, limit=10) for s in (store, other, store, other)))
            if not any(rounds):
                break
            won += [m.id for claimed in rounds for m in claimed]
    finally:
        await other.close()
    assert len(won) == len(set(won))  # none twice
    assert set(won) == {m.id for m in messages}  # none lost


async def test_mark_sent_drops_the_body_and_the_message_is_done(store: Store) -> None:
    """A sent message keeps its row (for pruning) with sent_at, an empty body and no lease; it is
    no longer waiting and never claimed again."""
    m = message()
    await enqueue(store, m)
    assert await waiting(store) == 1
    await claim(store)
    async with store.write() as tx:
        await tx.mark_sent(m.id, NOW + timedelta(seconds=3))
    assert await waiting(store) == 0
    assert await claim(store, NOW + timedelta(days=1)) == []
    row = await stored(store, m.id)
    assert (row.sealed, row.sent_at, row.lease_until, row.failed_at) == (b"", NOW + timedelta(seconds=3), None, None)


async def test_mark_failed_with_a_retry_time_waits_until_then(store: Store) -> None:
    """A failure to retry counts the attempt, keeps the body, frees the lease, records the error
    (at most 200 characters) and makes the message due again at retry_at, not before."""
    m = message()
    await enqueue(store, m)
    await claim(store)
    retry_at = NOW + timedelta(seconds=5)
    async with store.write() as tx:
        await tx.mark_failed(m.id, "the server answered 451" + "!" * 300, retry_at=retry_at, now=NOW)
    row = await stored(store, m.id)
    assert (row.attempts, row.sealed, row.lease_until, row.next_attempt_at) == (1, BODY, None, retry_at)
    assert row.last_error is not None
    assert row.last_error.startswith("the server answered 451")
    assert len(row.last_error) == 200
    assert row.failed_at is None
    assert await waiting(store) == 1
    assert await claim(store, retry_at - timedelta(seconds=1)) == []
    (again,) = await claim(store, retry_at)
    assert again.attempts == 1
    async with store.write() as tx:
        await tx.mark_failed(m.id, "still 451", retry_at=retry_at + timedelta(seconds=10), now=retry_at)
    assert (await stored(store, m.id)).attempts == 2


async def test_mark_failed_without_a_retry_time_gives_up_and_drops_the_body(store: Store) -> None:
    """A failure not to retry sets failed_at and empties the body: never claimed, no longer waiting."""
    m = message()
    await enqueue(store, m)
    await claim(store)
    async with store.write() as tx:
        await tx.mark_failed(m.id, "the server answered 550", retry_at=None, now=NOW)
    row = await stored(store, m.id)
    assert (row.failed_at, row.sealed, row.attempts, row.last_error) == (NOW, b"", 1, "the server answered 550")
    assert await waiting(store) == 0
    assert await claim(store, NOW + timedelta(days=3)) == []


async def test_prune_outbox_deletes_what_is_done_before_the_cutoff_in_batches(store: Store) -> None:
    """Sent and given-up messages older than ``before`` are deleted, at most ``limit`` a call;
    recent ones and messages still waiting (however old) stay."""
    old = NOW - timedelta(days=30)
    sent = [message(old) for _ in range(3)]
    failed, recent, pending = message(old), message(NOW), message(old)
    await enqueue(store, *sent, failed, recent, pending)
    async with store.write() as tx:
        for m in sent:
            await tx.mark_sent(m.id, old)
        await tx.mark_failed(failed.id, "550", retry_at=None, now=old)
        await tx.mark_sent(recent.id, NOW)
    cutoff = NOW - timedelta(days=7)
    async with store.write() as tx:
        assert await tx.prune_outbox(before=cutoff, limit=3) == 3
    async with store.write() as tx:
        assert await tx.prune_outbox(before=cutoff, limit=3) == 1
        assert await tx.prune_outbox(before=cutoff, limit=3) == 0
    assert {m.id for m in await everything(store)} == {recent.id, pending.id}


async def stored(store: Store, message_id: uuid.UUID) -> OutboxRecord:
    """The outbox row of ``message_id`` as stored now."""
    (row,) = [m for m in await everything(store) if m.id == message_id]
    return row


async def everything(store: Store) -> list[OutboxRecord]:
    """Every outbox row, as the store reads it (its types), without claiming any."""
    async with store.read() as tx:
        rows = await tx._conn.execute(select(outbox))
        return [OutboxRecord(**r._asdict()) for r in rows]
