"""Integration tests of pruning on a real SQLite file and PostgreSQL database, with a hand-moved clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from keyturn.core.errors import InvalidGrant
from keyturn.core.passwords import Passwords
from keyturn.server.http import create_app
from keyturn.server.service import Client, Service
from keyturn.server.store import AuditRecord, SessionRecord, UserRecord
from keyturn.server.store.schema import sessions
from tests.conftest import Clock, make_settings

pytestmark = pytest.mark.anyio

DAY = timedelta(days=1)
WHO = Client(ip="198.51.100.9", user_agent="test-agent")


async def make_service(database_url: str, clock: Clock, passwords: Passwords, **settings: str) -> Service:
    svc = Service(make_settings(database_url, **settings), passwords=passwords, clock=clock)
    await svc.start()
    return svc


@pytest.fixture
async def small_batches(database_url: str, clock: Clock, fast_passwords: Passwords) -> AsyncIterator[Service]:
    svc = await make_service(database_url, clock, fast_passwords, prune_batch_size="3")
    yield svc
    await svc.close()


async def add_user(svc: Service, now: datetime) -> uuid.UUID:
    user = UserRecord(uuid.uuid4(), "u", f"u-{uuid.uuid4()}", "$argon2id$fake", now, now)
    async with svc.store.write() as tx:
        await tx.insert_user(user)
    return user.id


async def add_session(
    svc: Service,
    user_id: uuid.UUID,
    created: datetime,
    rotated: datetime | None = None,
    revoked: datetime | None = None,
) -> uuid.UUID:
    record = SessionRecord(
        id=uuid.uuid4(), user_id=user_id, generation=0, created_at=created, rotated_at=rotated or created,
        last_used_at=rotated or created, client_id="keyturn", scope="profile", user_agent="ua", ip="192.0.2.1",
        revoked_at=revoked, revoke_reason="logout" if revoked else None,
    )  # fmt: skip
    async with svc.store.write() as tx:
        await tx.insert_session(record)
    return record.id


async def session_ids(svc: Service) -> set[uuid.UUID]:
    """Every stored session, dead or alive."""
    async with svc.store.db.engine.connect() as conn:
        return set((await conn.execute(select(sessions.c.id))).scalars())


async def test_prune_removes_only_sessions_dead_for_longer_than_the_retention(
    small_batches: Service, clock: Clock
) -> None:
    """Revoked, idle-expired and lifetime-expired sessions go after 7 days dead; live and recently
    dead ones stay. Batches of 3 still remove every one of them."""
    svc, now = small_batches, clock()
    uid = await add_user(svc, now - 90 * DAY)
    keep = {
        await add_session(svc, uid, now - DAY),  # live
        await add_session(svc, uid, now - 2 * DAY, revoked=now - 6 * DAY),  # revoked 6 days ago
        await add_session(svc, uid, now - 13 * DAY),  # idle-expired 6 days ago (7-day idle TTL)
        await add_session(svc, uid, now - 36 * DAY, rotated=now - DAY),  # past its 30 days 6 days ago
    }
    gone = set()
    for _ in range(4):
        gone.add(await add_session(svc, uid, now - 9 * DAY, revoked=now - 8 * DAY))
        gone.add(await add_session(svc, uid, now - 15 * DAY))  # idle-expired 8 days ago
        gone.add(await add_session(svc, uid, now - 38 * DAY, rotated=now - DAY))  # past its lifetime 8 days ago
    result = await svc.maintenance.prune()
    assert result.sessions == len(gone) == 12
    assert await session_ids(svc) == keep
    assert (await svc.maintenance.prune()).sessions == 0


async def test_prune_removes_audit_rows_older_than_the_retention(small_batches: Service, clock: Clock) -> None:
    """Audit rows older than 90 days go, newer ones stay, and the run leaves one `pruned` row."""
    svc, now = small_batches, clock()
    async with svc.store.write() as tx:
        for days in (91, 95, 120, 200, 365, 89, 10):
            await tx.audit(AuditRecord(at=now - days * DAY, event="login", outcome="ok"))
    before = await _audit(svc)
    result = await svc.maintenance.prune()
    assert result.audit_events == 5
    after = await _audit(svc)
    assert len(after) == len(before) - 5 + 1
    pruned = [e for e in after if e.event == "pruned"]
    assert len(pruned) == 1
    assert pruned[0].detail == {"sessions": 0, "audit_events": 5}
    assert min(e.at for e in after) == now - 89 * DAY


async def _audit(svc: Service) -> list[AuditRecord]:
    async with svc.store.read() as tx:
        return await tx.audit_events(limit=10_000)


async def test_a_pruned_session_refuses_its_refresh_token(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """A session pruned after logout stays dead: its refresh token is refused, not resurrected."""
    svc = await make_service(database_url, clock, fast_passwords, session_retention="0")
    try:
        await svc.auth.create_user("alice", "correct horse battery staple", WHO)
        pair = await svc.auth.login("alice", "correct horse battery staple", WHO)
        await svc.auth.logout(None, pair.refresh_token, WHO)
        clock.advance(1)
        assert (await svc.maintenance.prune()).sessions == 1
        with pytest.raises(InvalidGrant):
            await svc.auth.refresh(pair.refresh_token, WHO)
    finally:
        await svc.close()


async def test_several_pruners_at_once_delete_each_row_once(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """Three instances pruning the same rows together: no error, no row counted twice."""
    settings = make_settings(database_url, prune_batch_size="7")
    services = [Service(settings, passwords=fast_passwords, clock=clock) for _ in range(3)]
    try:
        for s in services:
            await s.start()
        now = clock()
        uid = await add_user(services[0], now)
        for _ in range(60):
            await add_session(services[0], uid, now - 20 * DAY, revoked=now - 10 * DAY)
        await add_session(services[0], uid, now)
        results = await asyncio.gather(*(s.maintenance.prune() for s in services))
        assert sum(r.sessions for r in results) == 60
        assert len(await session_ids(services[0])) == 1
    finally:
        for s in services:
            await s.close()


async def test_the_server_prunes_periodically(database_url: str, clock: Clock, fast_passwords: Passwords) -> None:
    """With KEYTURN_PRUNE_INTERVAL set, the running app prunes by itself (and stops with it)."""
    svc = Service(
        make_settings(database_url, prune_interval="0.05", session_retention="0"), passwords=fast_passwords, clock=clock
    )
    app = create_app(svc.settings, service=svc)
    async with app.router.lifespan_context(app):
        uid = await add_user(svc, clock())
        await add_session(svc, uid, clock() - DAY, revoked=clock() - DAY)
        for _ in range(200):  # bounded: 10 s at most
            if not await session_ids(svc):
                break
            await asyncio.sleep(0.05)
        assert await session_ids(svc) == set()
