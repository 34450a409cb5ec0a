"""Integration tests of keyturn.server.store._clients (the OAuth client registry's queries) on a real
SQLite file and PostgreSQL database: a client row round-trips, a taken id is refused without
spoiling the transaction, the listing is ordered, the row lock holds a second writer, a secret's
MAC is replaced, and ending a client's grant publishes the old grant to the revocation feed once
(compare-and-swap on the grant id)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import timedelta

import pytest

from keyturn.core.errors import InvalidRequest
from keyturn.core.revocations import Revocation
from keyturn.server.store import ClientRecord, Store
from tests.server.store.rows import NOW, UNTIL

pytestmark = pytest.mark.anyio

LATER = NOW + timedelta(minutes=1)


def client(client_id: str = "billing", **changes: object) -> ClientRecord:
    record = ClientRecord(
        client_id=client_id, name=f"The {client_id} service", auth_method="client_secret_basic",
        secret_mac="ab" * 32, grant_types="client_credentials", scope="invoices:read invoices:write",
        audience="https://api.example.test https://billing.example.test", grant_id=uuid.uuid4(), created_at=NOW,
        secret_rotated_at=NOW,
    )  # fmt: skip
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


async def insert(store: Store, *records: ClientRecord) -> None:
    async with store.write() as tx:
        for record in records:
            await tx.insert_client(record)


async def read(store: Store, client_id: str) -> ClientRecord | None:
    async with store.read() as tx:
        return await tx.client(client_id)


async def feed(store: Store) -> list[Revocation]:
    async with store.read() as tx:
        entries, _, more = await tx.revocations_after(0, NOW, 1000)
    assert not more
    return entries


@pytest.mark.parametrize(
    "record",
    [client(), client("reports", secret_mac=None, grant_types="", scope="", audience="x", name="r" * 128)],
    ids=["machine", "introspector"],
)
async def test_a_client_row_reads_back_as_written(store: Store, record: ClientRecord) -> None:
    """Every column round-trips: UUID grant, aware datetimes, space-separated lists, a null MAC."""
    await insert(store, record)
    assert await read(store, record.client_id) == record
    assert await read(store, "nobody") is None


async def test_a_taken_client_id_is_refused_and_the_transaction_goes_on(store: Store) -> None:
    """A second insert of an id is InvalidRequest client_exists, naming it; the first row is
    unchanged, and the same transaction still commits its other work (the insert is a savepoint)."""
    first = client()
    await insert(store, first)
    async with store.write() as tx:
        with pytest.raises(InvalidRequest) as refused:
            await tx.insert_client(client(name="an impostor"))
        await tx.insert_client(client("reports"))
    assert (refused.value.reason, refused.value.description) == ("client_exists", "A client named 'billing' exists.")
    assert await read(store, "billing") == first
    assert await read(store, "reports") is not None


async def test_clients_are_listed_by_id_up_to_the_limit(store: Store) -> None:
    """Ordered by client id whatever the order of registration; ``limit`` keeps the first ones."""
    await insert(store, *(client(name) for name in ("zeta", "alpha", "m-1", "m.0", "beta")))
    async with store.read() as tx:
        assert [c.client_id for c in await tx.list_clients()] == ["alpha", "beta", "m-1", "m.0", "zeta"]
        assert [c.client_id for c in await tx.list_clients(limit=2)] == ["alpha", "beta"]


async def test_lock_client_returns_the_row_or_none(store: Store) -> None:
    """The locked row is the stored one; an unknown id is None."""
    record = client()
    await insert(store, record)
    async with store.write() as tx:
        assert await tx.lock_client("billing") == record
        assert await tx.lock_client("nobody") is None


async def test_a_locked_client_holds_a_second_writer_until_commit(
    store: Store, database_url: str, backend: str
) -> None:
    """PostgreSQL: a second transaction's lock_client waits for the first to commit and then reads
    its change (a plain read would have returned the old row at once). SQLite has one writer at
    a time, so there the waiting is the store's by construction."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    await insert(store, client())
    other = Store.open(database_url)
    try:
        async with store.write() as tx:
            await tx.lock_client("billing")
            await tx.set_client_secret("billing", "cd" * 32, LATER)

            async def second() -> ClientRecord | None:
                async with other.write() as tx2:
                    return await tx2.lock_client("billing")

            waiting = asyncio.create_task(second())
            done, _ = await asyncio.wait({waiting}, timeout=0.3)
            assert not done, "the second writer did not wait for the lock"
        seen = await asyncio.wait_for(waiting, 10)
    finally:
        await other.close()
    assert seen is not None
    assert seen.secret_mac == "cd" * 32


async def test_setting_a_secret_replaces_its_mac_and_rotation_time_only(store: Store) -> None:
    """The new MAC and secret_rotated_at are stored; nothing else of the row moves."""
    record = client()
    await insert(store, record)
    async with store.write() as tx:
        await tx.set_client_secret("billing", "cd" * 32, LATER)
    assert await read(store, "billing") == dataclasses.replace(record, secret_mac="cd" * 32, secret_rotated_at=LATER)


@pytest.mark.parametrize("disable", [False, True])
async def test_ending_a_grant_publishes_it_and_draws_a_new_one(store: Store, disable: bool) -> None:
    """One feed entry for the old grant id, with the reason, at and until; the row has the new
    grant id returned; ``disable`` also disables the client (at the same time), else it stays enabled."""
    record = client()
    await insert(store, record)
    async with store.write() as tx:
        fresh = await tx.end_client_grant(record, NOW, "client_revoked", tokens_until=UNTIL, disable=disable)
        assert fresh is not None
    assert fresh != record.grant_id
    assert await feed(store) == [Revocation.of(record.grant_id, NOW, UNTIL, "client_revoked")]
    stored = await read(store, "billing")
    assert stored == dataclasses.replace(record, grant_id=fresh, disabled_at=NOW if disable else None)


async def test_ending_a_grant_with_a_stale_record_changes_nothing(store: Store) -> None:
    """Compare-and-swap on grant_id: a second end with the record read before the first one (its
    grant already ended) publishes nothing and leaves the row as the first end left it."""
    record = client()
    await insert(store, record)
    async with store.write() as tx:
        fresh = await tx.end_client_grant(record, NOW, "client_revoked", tokens_until=UNTIL)
        assert fresh is not None
    async with store.write() as tx:
        assert await tx.end_client_grant(record, LATER, "client_disabled", tokens_until=UNTIL, disable=True) is None
    assert [(e.sid, e.reason) for e in await feed(store)] == [(str(record.grant_id), "client_revoked")]
    assert await read(store, "billing") == dataclasses.replace(record, grant_id=fresh)


async def test_the_grant_entry_is_published_only_when_the_transaction_commits(store: Store) -> None:
    """A transaction that ends a grant and then fails publishes nothing and keeps the old grant."""
    record = client()
    await insert(store, record)

    async def end_then_fail() -> None:
        async with store.write() as tx:
            await tx.end_client_grant(record, NOW, "client_disabled", tokens_until=UNTIL, disable=True)
            raise RuntimeError("then something failed")

    with pytest.raises(RuntimeError, match="then something failed"):
        await end_then_fail()
    assert await feed(store) == []
    assert await read(store, "billing") == record


async def test_enabling_clears_disabled_at_and_keeps_the_grant(store: Store) -> None:
    """enable_client makes a disabled client enabled; the grant drawn at disable stays."""
    record = client()
    await insert(store, record)
    async with store.write() as tx:
        fresh = await tx.end_client_grant(record, NOW, "client_disabled", tokens_until=UNTIL, disable=True)
        assert fresh is not None
    async with store.write() as tx:
        await tx.enable_client("billing")
    assert await read(store, "billing") == dataclasses.replace(record, grant_id=fresh)
