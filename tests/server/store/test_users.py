"""Integration tests of keyturn.server.store._users (the queries on accounts) on a real SQLite file
and PostgreSQL database."""

from __future__ import annotations

import pytest

from keyturn.core.errors import UsernameTaken
from keyturn.server.store import Store
from tests.server.store.rows import NOW, seed, user

pytestmark = pytest.mark.anyio


async def test_user_round_trip_with_aware_datetimes(store: Store) -> None:
    """What goes in comes back, with UTC-aware datetimes."""
    alice = user()
    async with store.write() as tx:
        await tx.insert_user(alice)
    async with store.read() as tx:
        found = await tx.user_by_key("alice")
    assert found == alice
    assert found is not None
    assert found.created_at.tzinfo is not None


async def test_duplicate_username_is_username_taken_and_the_transaction_goes_on(store: Store) -> None:
    """The unique key is enforced; a savepoint keeps the rest of the transaction usable."""
    async with store.write() as tx:
        await tx.insert_user(user("alice"))
    async with store.write() as tx:
        with pytest.raises(UsernameTaken):
            await tx.insert_user(user("alice"))
        await tx.insert_user(user("bob"))
    async with store.read() as tx:
        assert [u.username for u in await tx.list_users()] == ["alice", "bob"]


async def test_a_password_hash_is_replaced_only_if_it_is_the_one_checked(store: Store) -> None:
    """set_password_hash is a compare-and-swap on the hash a password was checked against."""
    alice, _ = await seed(store)
    async with store.write() as tx:
        assert await tx.set_password_hash(alice.id, "second", NOW, replacing="not the stored hash") is False
        assert await tx.set_password_hash(alice.id, "second", NOW, replacing=alice.password_hash) is True
        assert await tx.set_password_hash(alice.id, "third", NOW, replacing=alice.password_hash) is False
        locked = await tx.lock_user(alice.id)
    assert locked is not None
    assert locked.password_hash == "second"
