"""Integration tests of keyturn.server.store._sessions (the queries on sessions, built from the
core's ``SessionBounds``) on a real SQLite file and PostgreSQL database: compare-and-swap, the
one-statement rotation, revocation, and liveness to the microsecond."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from keyturn.core.sessions import SessionBounds
from keyturn.server.store import Standing, Store
from tests.helpers import fetch
from tests.server.store.rows import LIFETIMES, NOW, UNTIL, bounds, seed, session, state_of, user

pytestmark = pytest.mark.anyio


async def test_rotation_is_a_compare_and_swap_on_generation(store: Store) -> None:
    """Only the caller holding the current generation moves it; the second one loses."""
    _, s = await seed(store)
    later = NOW + timedelta(minutes=1)
    async with store.write() as tx:
        assert await tx.rotate_session(s.id, 0, later) is True
        assert await tx.rotate_session(s.id, 0, later) is False
    async with store.read() as tx:
        row = await tx.session(s.id)
    assert row is not None
    assert (row.generation, row.rotated_at, row.last_used_at) == (1, later, later)


async def test_rotate_current_moves_only_a_live_current_session_inside_its_bounds(store: Store) -> None:
    """The one-statement rotation: a strict bound on rotated_at, an inclusive one on created_at,
    the generation, and a live session of an enabled user; it returns the new row and the user's standing."""
    alice, s = await seed(store)
    later = NOW + timedelta(minutes=1)
    async with store.write() as tx:
        at_bound = bounds(later, rotated_after=NOW, created_from=NOW - timedelta(days=1))
        assert await tx.rotate_current(s.id, 0, at_bound) is None  # rotated_at == bound: not after
        created_bound = bounds(
            later, rotated_after=NOW - timedelta(days=1), created_from=NOW + timedelta(microseconds=1)
        )
        assert await tx.rotate_current(s.id, 0, created_bound) is None
        inside = bounds(later, rotated_after=NOW - timedelta(microseconds=1), created_from=NOW)  # created_at == bound
        assert await tx.rotate_current(s.id, 1, inside) is None  # not the current generation
        found = await tx.rotate_current(s.id, 0, inside)
        assert found is not None
        row, standing = found
        assert (row.id, row.generation, row.rotated_at, row.last_used_at, row.created_at) == (
            s.id,
            1,
            later,
            later,
            NOW,
        )
        assert standing == Standing("", email_verified=False)
        assert await tx.rotate_current(s.id, 0, inside) is None  # lost the compare-and-swap
        assert await tx.revoke_sessions(alice.id, later, "logout", tokens_until=UNTIL) == [s.id]
        assert await tx.rotate_current(s.id, 1, inside) is None  # revoked


async def test_rotate_current_refuses_a_disabled_users_session_and_reads_the_user_of_now(store: Store) -> None:
    """The fast path checks the user in the same statement: a disabled user's live session does
    not rotate, and the roles and verified address returned are the user's at the time of the rotation."""
    alice, s = await seed(store)
    at = bounds(NOW, rotated_after=NOW - timedelta(days=1), created_from=NOW - timedelta(days=1))
    async with store.write() as tx:
        await tx.set_roles(alice.id, "admin")
        assert await tx.set_email(alice.id, "alice@example.com", "alice@example.com")
        assert await tx.mark_email_verified(alice.id, "alice@example.com", NOW)
        found = await tx.rotate_current(s.id, 0, at)
        assert found is not None
        assert found[1] == Standing("admin", email_verified=True)
        await tx.set_roles(alice.id, "")
        assert await tx.set_email(alice.id, "alice@example.org", "alice@example.org")  # a new address: unverified
        found = await tx.rotate_current(s.id, 1, at)
        assert found is not None
        assert found[1] == Standing("", email_verified=False)
        assert await tx.disable_user(alice.id, NOW)
        assert await tx.rotate_current(s.id, 2, at) is None
    async with store.read() as tx:
        row = await tx.session(s.id)
    assert row is not None
    assert row.generation == 2


async def test_a_session_revoked_by_transactions_at_once_is_revoked_once(store: Store) -> None:
    """revoke_sessions is one statement: of eight transactions ending one session at once, one
    revokes it (its time and reason stay) and reports it, so it is audited once (a sibling of
    review finding 3: on PostgreSQL a separate read and write revoked and reported it eight times)."""
    alice, s = await seed(store)

    async def revoke(reason: str) -> list[uuid.UUID]:
        async with store.write() as tx:
            return await tx.revoke_sessions(alice.id, NOW, reason, only=s.id, tokens_until=UNTIL)

    results = await asyncio.gather(*(revoke(f"reason-{i}") for i in range(8)))
    winners = [i for i, ended in enumerate(results) if ended]
    assert len(winners) == 1
    assert results[winners[0]] == [s.id]
    async with store.read() as tx:
        row = await tx.session(s.id)
    assert row is not None
    assert row.revoke_reason == f"reason-{winners[0]}"


async def test_password_attempts_are_charged_atomically_up_to_the_limit(store: Store) -> None:
    """charge_password_attempt counts while under the limit and refuses at it, or on a revoked session."""
    alice, s = await seed(store)
    async with store.write() as tx:
        assert [await tx.charge_password_attempt(s.id, 2) for _ in range(3)] == [True, True, False]
        await tx.clear_password_attempts(s.id)
        assert await tx.charge_password_attempt(s.id, 2) is True
        await tx.revoke_sessions(alice.id, NOW, "logout", tokens_until=UNTIL)
        assert await tx.charge_password_attempt(s.id, 2) is False


async def test_revoked_session_never_rotates(store: Store) -> None:
    """The CAS also requires the session to be live."""
    alice, s = await seed(store)
    async with store.write() as tx:
        assert await tx.revoke_sessions(alice.id, NOW, "logout", tokens_until=UNTIL) == [s.id]
        assert await tx.rotate_session(s.id, 0, NOW) is False


async def test_revoke_only_one_or_all_but_one(store: Store) -> None:
    """revoke_sessions(only=, tokens_until=UNTIL) ends one; keep= ends the rest; revoked ones are not counted twice."""
    alice = user()
    a, b, c = session(alice.id), session(alice.id), session(alice.id)
    async with store.write() as tx:
        await tx.insert_user(alice)
        for s in (a, b, c):
            await tx.insert_session(s)
        assert await tx.revoke_sessions(alice.id, NOW, "x", only=a.id, tokens_until=UNTIL) == [a.id]
        assert set(await tx.revoke_sessions(alice.id, NOW, "y", keep=c.id, tokens_until=UNTIL)) == {b.id}
        assert await tx.revoke_sessions(alice.id, NOW, "z", only=a.id, tokens_until=UNTIL) == []
    async with store.read() as tx:
        live = await tx.live_sessions(alice.id, SessionBounds.at(NOW, LIFETIMES))
    assert [s.id for s in live] == [c.id]


async def test_storage_per_session_is_constant_across_rotations(store: Store, database_url: str) -> None:
    """1,000 rotations leave one session row of the same size."""
    _, s = await seed(store)
    if store.db.is_sqlite:
        sql = "SELECT count(*), length(id) + length(generation) + length(rotated_at) FROM sessions"
    else:
        sql = "SELECT count(*), sum(pg_column_size(s.*)) FROM sessions s"
    [before] = await fetch(database_url, sql)
    for generation in range(1000):
        async with store.write() as tx:
            assert await tx.rotate_session(s.id, generation, NOW + timedelta(seconds=generation))
    [after] = await fetch(database_url, sql)
    assert before[0] == after[0] == 1
    assert abs(after[1] - before[1]) <= 3  # the generation number's digits


async def test_listing_counting_and_pruning_apply_the_bounds_to_the_microsecond(store: Store) -> None:
    """Sessions one microsecond either side of each bound: the SQL built from ``SessionBounds``
    lists and counts exactly those ``is_live`` calls live, and prunes exactly the others."""
    alice = user()
    at = SessionBounds.at(NOW, LIFETIMES)
    micro = timedelta(microseconds=1)
    rows = {
        "idle_bound": replace(session(alice.id), rotated_at=at.rotated_after),
        "idle_inside": replace(session(alice.id), rotated_at=at.rotated_after + micro),
        "absolute_bound": replace(session(alice.id), created_at=at.created_from, rotated_at=NOW),
        "absolute_outside": replace(session(alice.id), created_at=at.created_from - micro, rotated_at=NOW),
        "revoked": replace(session(alice.id), revoked_at=NOW - micro),
    }
    async with store.write() as tx:
        await tx.insert_user(alice)
        for row in rows.values():
            await tx.insert_session(row)
    live = {name for name, row in rows.items() if at.is_live(state_of(row))}
    assert live == {"idle_inside", "absolute_bound"}
    async with store.read() as tx:
        listed = {r.id for r in await tx.live_sessions(alice.id, at)}
        counted = await tx.count_live_sessions(at)
    assert listed == {rows[name].id for name in live}
    assert counted == len(live)
    async with store.write() as tx:
        assert await tx.prune_sessions(at, limit=100) == len(rows) - len(live)
    async with store.read() as tx:
        left = {name for name, row in rows.items() if await tx.session(row.id) is not None}
    assert left == live
