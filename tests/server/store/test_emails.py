"""Integration tests of keyturn.server.store._emails (accounts' addresses and the single-use links
mailed to them), and of insert_user's answer for a taken address, on a real SQLite file and
PostgreSQL database."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from keyturn.core.errors import UsernameTaken
from keyturn.server.store import EmailTokenRecord, Store, UserRecord
from tests.helpers import fetch
from tests.server.store.rows import NOW, user

pytestmark = pytest.mark.anyio
TTL = timedelta(minutes=30)


def with_email(name: str, email: str) -> UserRecord:
    return replace(user(name), email=email, email_key=email.casefold())


def link(owner: UserRecord, mac: str = "m" * 64, purpose: str = "reset", ttl: timedelta = TTL) -> EmailTokenRecord:
    assert owner.email_key is not None
    return EmailTokenRecord(mac, owner.id, purpose, owner.email_key, NOW, NOW + ttl)


async def added(store: Store, *users: UserRecord, links: tuple[EmailTokenRecord, ...] = ()) -> None:
    async with store.write() as tx:
        for u in users:
            assert await tx.insert_user(u)
        for token in links:
            await tx.insert_email_token(token)


async def stored(store: Store, name: str) -> UserRecord:
    async with store.read() as tx:
        found = await tx.user_by_key(name)
    assert found is not None
    return found


@pytest.fixture
def concurrent_writers(backend: str) -> None:
    """Skip on SQLite: it has one writer at a time, so a second write transaction cannot start
    inside the first."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time")


# --- addresses on accounts --------------------------------------------------------------------


async def test_user_by_email_finds_the_account_by_its_key(store: Store) -> None:
    """The address round-trips as shown; lookups are by the key; an unknown key is None."""
    alice = with_email("alice", "Alice@example.com")
    await added(store, alice)
    async with store.read() as tx:
        found = await tx.user_by_email("alice@example.com")
        assert await tx.user_by_email("Alice@example.com") is None  # the key, not the display
        assert await tx.user_by_email("bob@example.com") is None
    assert found == alice
    assert (found.email, found.email_key, found.email_verified_at) == ("Alice@example.com", "alice@example.com", None)


async def test_set_email_to_a_taken_key_is_false_and_the_transaction_goes_on(store: Store) -> None:
    """The unique key refuses a second account with the address: False, nothing changed, and a
    savepoint keeps the rest of the transaction usable."""
    alice, bob = with_email("alice", "alice@example.com"), with_email("bob", "bob@example.com")
    await added(store, alice, bob)
    async with store.write() as tx:
        assert await tx.set_email(bob.id, "ALICE@example.com", "alice@example.com") is False
        assert await tx.set_email(bob.id, "bob@example.org", "bob@example.org") is True
    assert (await stored(store, "bob")).email_key == "bob@example.org"
    assert (await stored(store, "alice")).email_key == "alice@example.com"


async def test_set_email_makes_the_address_unverified_and_none_removes_it(store: Store) -> None:
    """A new address starts unverified (even if the old one was verified); None clears all three
    columns and frees the key for another account."""
    alice, bob = with_email("alice", "alice@example.com"), user("bob")
    await added(store, alice, bob)
    async with store.write() as tx:
        assert await tx.mark_email_verified(alice.id, "alice@example.com", NOW)
    assert (await stored(store, "alice")).email_verified_at == NOW
    async with store.write() as tx:
        assert await tx.set_email(alice.id, "alice@example.org", "alice@example.org")
    assert (await stored(store, "alice")).email_verified_at is None
    async with store.write() as tx:
        assert await tx.set_email(alice.id, None, None)
        assert await tx.set_email(bob.id, "alice@example.org", "alice@example.org")
    cleared = await stored(store, "alice")
    assert (cleared.email, cleared.email_key, cleared.email_verified_at) == (None, None, None)


async def test_accounts_without_an_address_do_not_collide(store: Store) -> None:
    """Many accounts may have no address: NULL is no taken key, on either database."""
    alice, bob = with_email("alice", "alice@example.com"), user("bob")
    await added(store, alice, bob, user("carol"))
    async with store.write() as tx:
        assert await tx.set_email(alice.id, None, None)
        assert await tx.set_email(bob.id, None, None)
    async with store.read() as tx:
        assert [u.email_key for u in await tx.list_users()] == [None, None, None]


async def test_insert_user_with_a_taken_address_is_false_and_inserts_nothing(store: Store) -> None:
    """A new account whose address key another account has is not inserted: False, not an error,
    and the transaction goes on."""
    await added(store, with_email("alice", "alice@example.com"))
    async with store.write() as tx:
        assert await tx.insert_user(with_email("bob", "ALICE@EXAMPLE.COM")) is False
        assert await tx.insert_user(with_email("carol", "carol@example.com")) is True
    async with store.read() as tx:
        assert [u.username for u in await tx.list_users()] == ["alice", "carol"]


async def test_insert_user_with_a_taken_name_is_username_taken(store: Store) -> None:
    """A taken name is UsernameTaken whatever the address (free, taken, or none)."""
    await added(store, with_email("alice", "alice@example.com"))
    async with store.write() as tx:
        for again in (with_email("alice", "other@example.com"), with_email("alice", "alice@example.com"), user()):
            with pytest.raises(UsernameTaken):
                await tx.insert_user(again)
    async with store.read() as tx:
        assert [u.email_key for u in await tx.list_users()] == ["alice@example.com"]


async def test_two_accounts_racing_for_one_address_one_wins(store: Store) -> None:
    """Eight transactions giving eight accounts one address at once: exactly one gets it."""
    people = [with_email(f"u{i}", f"u{i}@example.com") for i in range(8)]
    await added(store, *people)

    async def claim(u: UserRecord) -> bool:
        async with store.write() as tx:
            return await tx.set_email(u.id, "shared@example.com", "shared@example.com")

    assert sorted(await asyncio.gather(*(claim(u) for u in people))) == [False] * 7 + [True]


# --- verification is bound to the address ------------------------------------------------------


async def test_mark_email_verified_only_while_the_address_is_the_one_given(store: Store) -> None:
    """Verifying with the key the link was sent to works; with another (the address changed since),
    nothing is written."""
    alice = with_email("alice", "alice@example.com")
    await added(store, alice)
    async with store.write() as tx:
        assert await tx.set_email(alice.id, "alice@example.org", "alice@example.org")
        assert await tx.mark_email_verified(alice.id, "alice@example.com", NOW) is False
    assert (await stored(store, "alice")).email_verified_at is None
    async with store.write() as tx:
        assert await tx.mark_email_verified(alice.id, "alice@example.org", NOW) is True
        assert await tx.mark_email_verified(uuid.uuid4(), "alice@example.org", NOW) is False
    assert (await stored(store, "alice")).email_verified_at == NOW


# --- single-use links ---------------------------------------------------------------------------


async def test_a_link_is_used_once(store: Store) -> None:
    """The first use returns the link (used now); the second, and an unknown MAC, return None."""
    alice = with_email("alice", "alice@example.com")
    token = link(alice)
    await added(store, alice, links=(token,))
    async with store.write() as tx:
        first = await tx.use_email_token(token.mac, "reset", NOW)
        assert await tx.use_email_token(token.mac, "reset", NOW) is None
        assert await tx.use_email_token("n" * 64, "reset", NOW) is None
    assert first == replace(token, used_at=NOW)
    async with store.write() as tx:
        assert await tx.use_email_token(token.mac, "reset", NOW) is None


async def test_a_link_works_until_it_expires(store: Store) -> None:
    """Usable a microsecond before expires_at; refused at it and after (and stays usable meanwhile)."""
    alice = with_email("alice", "alice@example.com")
    token, other = link(alice), link(alice, "o" * 64, purpose="verify")
    await added(store, alice, links=(token, other))
    async with store.write() as tx:
        assert await tx.use_email_token(token.mac, "reset", token.expires_at) is None
        assert await tx.use_email_token(other.mac, "verify", other.expires_at + timedelta(days=1)) is None
        assert await tx.use_email_token(token.mac, "reset", token.expires_at - timedelta(microseconds=1)) is not None


async def test_a_link_works_only_for_its_purpose(store: Store) -> None:
    """A verification link is no reset link (and the wrong try does not use it up)."""
    alice = with_email("alice", "alice@example.com")
    token = link(alice, purpose="verify")
    await added(store, alice, links=(token,))
    async with store.write() as tx:
        assert await tx.use_email_token(token.mac, "reset", NOW) is None
    async with store.write() as tx:
        used = await tx.use_email_token(token.mac, "verify", NOW)
    assert used is not None
    assert (used.purpose, used.email_key, used.user_id) == ("verify", "alice@example.com", alice.id)


async def test_retire_ends_only_that_users_unused_links_of_that_purpose(store: Store) -> None:
    """Retiring a user's reset links leaves their verification link, another user's reset link, and
    the time an already used link was used."""
    alice, bob = with_email("alice", "alice@example.com"), with_email("bob", "bob@example.com")
    resets = [link(alice, "a" * 64), link(alice, "b" * 64)]
    verify, bobs, used = link(alice, "c" * 64, "verify"), link(bob, "d" * 64), link(alice, "e" * 64)
    await added(store, alice, bob, links=(*resets, verify, bobs, used))
    earlier = NOW - timedelta(minutes=1)
    async with store.write() as tx:
        assert await tx.use_email_token(used.mac, "reset", earlier) is not None
        await tx.retire_email_tokens(alice.id, "reset", NOW)
    async with store.write() as tx:
        assert [await tx.use_email_token(t.mac, "reset", NOW) for t in resets] == [None, None]
        assert await tx.use_email_token(verify.mac, "verify", NOW) is not None
        assert await tx.use_email_token(bobs.mac, "reset", NOW) is not None
    rows = await fetch(store.db.url, "SELECT mac, used_at FROM email_tokens")
    used_at = dict(rows)
    assert str(used_at[used.mac]).startswith(earlier.strftime("%Y-%m-%d %H:%M"))
    assert used_at[used.mac] != used_at[resets[0].mac]


async def test_links_used_at_once_by_many_transactions_are_used_once(store: Store) -> None:
    """Eight transactions using one link at once: exactly one gets it (one conditional UPDATE)."""
    alice = with_email("alice", "alice@example.com")
    token = link(alice)
    await added(store, alice, links=(token,))

    async def use() -> EmailTokenRecord | None:
        async with store.write() as tx:
            return await tx.use_email_token(token.mac, "reset", NOW)

    results = await asyncio.gather(*(use() for _ in range(8)))
    assert [r is not None for r in results].count(True) == 1


async def test_a_second_connection_waits_for_the_first_use_and_then_finds_it_used(
    concurrent_writers: None, store: Store, database_url: str
) -> None:
    """PostgreSQL: transaction A uses the link and holds its transaction open; B, on another
    connection, tries the same link and waits on A's row lock; when A commits, B re-reads the row
    and gets None (READ COMMITTED re-checks the WHERE), so the link is used exactly once."""
    alice = with_email("alice", "alice@example.com")
    token = link(alice)
    await added(store, alice, links=(token,))
    a_used, release = asyncio.Event(), asyncio.Event()

    async def first() -> EmailTokenRecord | None:
        async with store.write() as tx:
            got = await tx.use_email_token(token.mac, "reset", NOW)
            a_used.set()
            await release.wait()
        return got

    async def second() -> EmailTokenRecord | None:
        await a_used.wait()
        async with store.write() as tx:
            return await tx.use_email_token(token.mac, "reset", NOW + timedelta(seconds=1))

    async with asyncio.timeout(20):
        a, b = asyncio.create_task(first()), asyncio.create_task(second())
        await waiting_on_a_lock(database_url)
        assert not b.done()
        release.set()
        results = await asyncio.gather(a, b)
    assert results[0] == replace(token, used_at=NOW)
    assert results[1] is None


async def waiting_on_a_lock(database_url: str) -> None:
    """Return once some session of this database waits on a lock (polled for up to 10 s)."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        " AND pid <> pg_backend_pid()"
    )
    deadline = time.monotonic() + 10.0
    while (await fetch(database_url, sql))[0][0] == 0:
        assert time.monotonic() < deadline, "the second transaction never waited on the first's lock"
        await asyncio.sleep(0.02)
