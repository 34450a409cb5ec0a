"""Integration tests of keyturn.server.store._revocations (the revocation feed's queries) on a real
SQLite file and PostgreSQL database: entries written last in the transaction that ends their
sessions, positions visible in commit order (also under concurrent writers on PostgreSQL), paging
past expired rows, the head, the epoch, pruning, and positions never handed out twice."""

from __future__ import annotations

import asyncio
import collections
import re
import threading
from datetime import datetime, timedelta

import pytest

from keyturn.core.revocations import Revocation
from keyturn.server.store import SessionRecord, Store, UserRecord
from tests.helpers import execute
from tests.server.store.rows import NOW, UNTIL, seed, session, user

pytestmark = pytest.mark.anyio

LATER = NOW + timedelta(minutes=5)  # when the feed is read in the paging tests
EXPIRED = NOW + timedelta(minutes=1)  # a tokens_until already past at LATER


@pytest.fixture
def concurrent_writers(backend: str) -> None:
    """Skip on SQLite: it has one writer at a time, so a second write transaction cannot start
    inside the first, and positions are committed in order by construction."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time")


async def sessions_of(store: Store, n: int, name: str = "alice") -> tuple[UserRecord, list[SessionRecord]]:
    """One user with ``n`` sessions, committed."""
    alice = user(name)
    rows = [session(alice.id) for _ in range(n)]
    async with store.write() as tx:
        await tx.insert_user(alice)
        for row in rows:
            await tx.insert_session(row)
    return alice, rows


async def end(store: Store, s: SessionRecord, *, until: datetime = UNTIL) -> int:
    """End one session (logout) in a transaction of its own; the feed's head after it committed."""
    async with store.write() as tx:
        assert await tx.revoke_sessions(s.user_id, NOW, "logout", only=s.id, tokens_until=until) == [s.id]
    async with store.read() as tx:
        return await tx.revocation_head()


async def feed(store: Store, after: int = 0, now: datetime = NOW) -> list[Revocation]:
    async with store.read() as tx:
        entries, _, more = await tx.revocations_after(after, now, 1000)
    assert not more
    return entries


async def test_ended_sessions_are_written_last_in_their_transaction(store: Store) -> None:
    """revoke_sessions queues one entry per session it ended: the feed has none of them while the
    transaction works (not even as the transaction itself reads it), and all of them once it commits."""
    alice, rows = await sessions_of(store, 3)
    async with store.write() as tx:
        ended = await tx.revoke_sessions(alice.id, NOW, "logout_all", keep=rows[2].id, tokens_until=UNTIL)
        assert sorted(ended) == sorted(r.id for r in rows[:2])
        assert await tx.revocation_head() == 0
        entries, position, more = await tx.revocations_after(0, NOW, 1000)
        assert (entries, position, more) == ([], 0, False)
    assert await feed(store) == [Revocation.of(sid, NOW, UNTIL, "logout_all") for sid in ended]


async def test_a_session_revoked_twice_is_listed_once(store: Store) -> None:
    """A revoke that ends nothing new (already revoked) queues nothing."""
    alice, s = await seed(store)
    await end(store, s)
    async with store.write() as tx:
        assert await tx.revoke_sessions(alice.id, NOW, "logout_all", tokens_until=UNTIL) == []
    assert [e.sid for e in await feed(store)] == [str(s.id)]


async def test_positions_follow_commit_order(store: Store) -> None:
    """Sessions ended one transaction after another are listed in that order, not the order they
    were created in."""
    _, rows = await sessions_of(store, 4)
    order = [rows[2], rows[0], rows[3], rows[1]]
    heads = [await end(store, s) for s in order]
    assert heads == sorted(heads)
    assert len(set(heads)) == len(heads)
    assert [e.sid for e in await feed(store)] == [str(s.id) for s in order]


async def test_a_transaction_that_revoked_first_but_commits_last_is_listed_last(
    concurrent_writers: None, store: Store
) -> None:
    """PostgreSQL: transaction A ends its session, B ends another and commits, then A commits.
    The feed lists B's before A's: positions are taken when the work is done, not at the revoke
    (a reader that saw B's position would otherwise skip A's for good)."""
    alice, (a, b) = await sessions_of(store, 2)
    a_revoked, b_committed = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with store.write() as tx:
            await tx.revoke_sessions(alice.id, NOW, "logout", only=a.id, tokens_until=UNTIL)
            a_revoked.set()
            await b_committed.wait()

    async def second() -> None:
        await a_revoked.wait()
        async with store.write() as tx:
            await tx.revoke_sessions(alice.id, NOW, "logout", only=b.id, tokens_until=UNTIL)
        b_committed.set()

    async with asyncio.timeout(10):
        await asyncio.gather(first(), second())
    assert [e.sid for e in await feed(store)] == [str(b.id), str(a.id)]


async def test_a_transaction_that_raises_publishes_nothing(store: Store) -> None:
    """An error after revoke_sessions rolls the revocation back and writes no entry; the next
    transaction publishes only its own."""
    alice, rows = await sessions_of(store, 2)

    async def revoke_then_fail() -> None:
        async with store.write() as tx:
            await tx.revoke_sessions(alice.id, NOW, "logout_all", tokens_until=UNTIL)
            raise RuntimeError("after the revoke")

    with pytest.raises(RuntimeError, match="after the revoke"):
        await revoke_then_fail()
    async with store.read() as tx:
        assert await tx.revocation_head() == 0
        found = [await tx.session(r.id) for r in rows]
    assert [f.revoked_at if f is not None else "gone" for f in found] == [None, None]
    await end(store, rows[1])
    assert [e.sid for e in await feed(store)] == [str(rows[1].id)]


async def test_pages_pass_over_expired_rows_and_say_when_more_may_follow(store: Store) -> None:
    """revocations_after reads ``limit`` rows in position order, returns those whose tokens may
    still verify at ``now``, moves the position past the expired ones too (a page of only expired
    rows is empty but moves on), and says ``more`` when it read a full page."""
    _, rows = await sessions_of(store, 6)
    live = {0, 4, 5}
    heads = [await end(store, s, until=UNTIL if i in live else EXPIRED) for i, s in enumerate(rows)]
    pages = []
    position, more = 0, True
    async with store.read() as tx:
        while more:
            entries, position, more = await tx.revocations_after(position, LATER, 2)
            pages.append(([e.sid for e in entries], position, more))
    sid = [str(s.id) for s in rows]
    assert pages == [
        ([sid[0]], heads[1], True),
        ([], heads[3], True),
        ([sid[4], sid[5]], heads[5], True),
        ([], heads[5], False),
    ]
    async with store.read() as tx:
        entries, position, more = await tx.revocations_after(0, LATER, 1000)
    assert ([e.sid for e in entries], position, more) == ([sid[0], sid[4], sid[5]], heads[5], False)
    assert entries[0] == Revocation.of(rows[0].id, NOW, UNTIL, "logout")


async def test_reading_after_the_newest_position_is_empty_and_stays_there(store: Store) -> None:
    """Nothing after the head: no entries, the same position, no more."""
    _, s = await seed(store)
    head = await end(store, s)
    async with store.read() as tx:
        assert await tx.revocations_after(head, NOW, 10) == ([], head, False)
        assert await tx.revocations_after(head + 1000, NOW, 10) == ([], head + 1000, False)


async def test_the_head_is_the_newest_position(store: Store) -> None:
    """0 on an empty feed; then the position of the last entry written, the one a full read ends at."""
    async with store.read() as tx:
        assert await tx.revocation_head() == 0
    alice, _ = await sessions_of(store, 3)
    async with store.write() as tx:
        await tx.revoke_sessions(alice.id, NOW, "logout_all", tokens_until=UNTIL)
    async with store.read() as tx:
        head = await tx.revocation_head()
        entries, position, _ = await tx.revocations_after(0, NOW, 1000)
    assert len(entries) == 3
    assert head == position > 0


async def test_the_feed_epoch_is_32_hex_digits_and_stable(store: Store) -> None:
    """The epoch names the database: the same in every transaction and after the store is reopened."""
    async with store.read() as tx:
        epoch = await tx.feed_epoch()
    assert re.fullmatch(r"[0-9a-f]{32}", epoch)
    _, s = await seed(store)
    await end(store, s)
    async with store.read() as tx:
        assert await tx.feed_epoch() == epoch
    reopened = Store.open(store.db.url)
    try:
        async with reopened.read() as tx:
            assert await tx.feed_epoch() == epoch
    finally:
        await reopened.close()


async def test_pruning_deletes_only_entries_past_before_in_batches(store: Store) -> None:
    """prune_revocations deletes entries whose ``until`` is before ``before`` (not at it), at most
    ``limit`` a call."""
    _, rows = await sessions_of(store, 4)
    untils = [NOW + timedelta(minutes=m) for m in (1, 2, 3, 4)]
    for s, until in zip(rows, untils, strict=True):
        await end(store, s, until=until)
    async with store.write() as tx:
        assert await tx.prune_revocations(before=untils[1], limit=100) == 1
    assert [e.sid for e in await feed(store)] == [str(s.id) for s in rows[1:]]
    counts = []
    for _ in range(3):
        async with store.write() as tx:
            counts.append(await tx.prune_revocations(before=NOW + timedelta(hours=1), limit=2))
    assert counts == [2, 1, 0]
    assert await feed(store) == []


async def test_positions_are_never_handed_out_twice_after_the_newest_are_pruned(store: Store) -> None:
    """Pruning every entry (the newest too) does not let a new entry take an old position: a
    reader whose cursor is past the old ones still sees it (AUTOINCREMENT on SQLite, a sequence
    on PostgreSQL)."""
    _, rows = await sessions_of(store, 4)
    old_head = [await end(store, s, until=EXPIRED) for s in rows[:3]][-1]
    async with store.write() as tx:
        assert await tx.prune_revocations(before=LATER, limit=100) == 3
    async with store.read() as tx:
        assert await tx.revocation_head() == 0
    new_head = await end(store, rows[3])
    assert new_head > old_head
    assert [e.sid for e in await feed(store, after=old_head)] == [str(rows[3].id)]


async def test_concurrent_writers_make_positions_visible_in_order(
    concurrent_writers: None, store: Store, database_url: str
) -> None:
    """PostgreSQL, 40 transactions each ending a user's session at once while a reader (in a thread
    of its own, like another instance) follows the feed by position as fast as it can: the reader
    sees every session exactly once. Without the advisory lock that publishing takes, a
    transaction may commit a larger position before another commits a smaller one, and a reader
    that read in between skips the smaller one for good.

    Each commit is made slow by up to 10 ms at random (a trigger sleeping after the insert, as a
    synchronous replica or a slow disk would), so that without the lock the race is all but
    certain instead of rare."""
    await execute(database_url, _SLOW_COMMIT_FUNCTION)
    await execute(database_url, _SLOW_COMMIT_TRIGGER)
    users = [await sessions_of(store, 1, f"user{i}") for i in range(WRITERS)]
    writing = threading.Event()
    writing.set()

    async def follow() -> list[str]:
        reader = Store.open(store.db.url, pool_size=1, max_overflow=0)  # on this thread's loop
        seen: list[str] = []
        position = 0
        try:
            while True:
                last_round = not writing.is_set()  # read once more after every writer has committed
                async with reader.read() as tx:
                    entries, position, _ = await tx.revocations_after(position, NOW, 1000)
                seen.extend(e.sid for e in entries)
                if last_round:
                    return seen
        finally:
            await reader.close()

    async def end_all(owner: UserRecord) -> None:
        async with store.write() as tx:
            await tx.revoke_sessions(owner.id, NOW, "logout_all", tokens_until=UNTIL)

    async with asyncio.timeout(30):
        following = asyncio.create_task(asyncio.to_thread(asyncio.run, follow()))
        try:
            await asyncio.gather(*(end_all(owner) for owner, _ in users))
        finally:
            writing.clear()
        seen = await following
    expected = collections.Counter(str(s.id) for _, rows in users for s in rows)
    assert collections.Counter(seen) == expected, f"{len(set(expected) - set(seen))} skipped, {len(seen)} read"


WRITERS = 40
_SLOW_COMMIT_FUNCTION = """
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(random() * 0.01); RETURN NULL; END $$
"""
_SLOW_COMMIT_TRIGGER = (
    "CREATE TRIGGER slow_commit AFTER INSERT ON revocations FOR EACH STATEMENT EXECUTE FUNCTION slow_commit()"
)
