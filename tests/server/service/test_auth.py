"""Integration tests of the use cases on a real SQLite file, with a hand-moved clock."""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import UTC, datetime, timedelta

import pytest

from keyturn.core.errors import (
    InvalidCredentials,
    InvalidToken,
    RefreshTokenReused,
    SessionExpired,
    SessionRevoked,
)
from keyturn.core.passwords import Passwords
from keyturn.server.service import Client, Service
from tests.conftest import Clock, make_settings

pytestmark = pytest.mark.anyio

PW = "correct horse battery staple"
WHO = Client(ip="198.51.100.4", user_agent="test-agent")


async def events(svc: Service) -> list[tuple[str, str]]:
    async with svc.store.read() as tx:
        return [(e.event, e.outcome) for e in reversed(await tx.audit_events(limit=1000))]


async def test_reuse_revocation_is_committed_although_the_refresh_fails(service: Service, clock: Clock) -> None:
    """The refusal raises, yet the revocation and its audit row are already in the database."""
    await service.auth.create_user("alice", PW, WHO)
    first = await service.auth.login("alice", PW, WHO)
    second = await service.auth.refresh(first.refresh_token, WHO)
    clock.advance(30)
    with pytest.raises(RefreshTokenReused):
        await service.auth.refresh(first.refresh_token, WHO)
    async with service.store.read() as tx:
        sessions = await tx.live_sessions(None, clock() - service.ctx.lifetimes.absolute)
    assert sessions == []
    assert ("reuse_detected", "revoked") in await events(service)
    with pytest.raises(SessionRevoked):
        await service.auth.refresh(second.refresh_token, WHO)
    with pytest.raises(InvalidToken):
        await service.auth.authenticate(second.access_token)


async def test_absolute_lifetime_ends_a_session_that_keeps_refreshing(service: Service, clock: Clock) -> None:
    """Refreshing every day cannot stretch a session past 30 days; access tokens never outlive it."""
    await service.auth.create_user("alice", PW, WHO)
    pair = await service.auth.login("alice", PW, WHO)
    for _ in range(29):
        clock.advance(86400)
        pair = await service.auth.refresh(pair.refresh_token, WHO)
    clock.advance(86400 - 60)
    pair = await service.auth.refresh(pair.refresh_token, WHO)
    assert pair.expires_in == 60
    assert pair.refresh_token_expires_in == 60
    clock.advance(60)
    with pytest.raises(SessionExpired) as caught:
        await service.auth.refresh(pair.refresh_token, WHO)
    assert caught.value.reason == "absolute_expired"


@pytest.mark.parametrize("left", [0.9, 0.5, 0.01])
async def test_no_token_response_says_zero_near_the_end_of_a_session(
    service: Service, clock: Clock, left: float
) -> None:
    """Regression (review finding 6): a sign-in at a fractional second, refreshed every few days,
    then ``1 + left`` seconds before the session's end (floored to the second): the answer states
    at least 1 s for both tokens, never more than is left, and the access token ends with the
    session; in the session's last second nothing is issued at all."""
    await service.auth.create_user("alice", PW, WHO)
    clock.advance(0.3)
    pair = await service.auth.login("alice", PW, WHO)
    end = (clock() + service.ctx.lifetimes.absolute).replace(microsecond=0)
    while clock() < end - timedelta(days=6):
        clock.advance(5 * 86400)
        pair = await service.auth.refresh(pair.refresh_token, WHO)
    clock.now = end - timedelta(seconds=1 + left)
    pair = await service.auth.refresh(pair.refresh_token, WHO)
    assert pair.expires_in >= 1
    assert pair.refresh_token_expires_in >= 1
    caller = await service.auth.authenticate(pair.access_token)
    assert caller.claims.exp <= end.timestamp()
    assert clock().timestamp() + pair.expires_in <= caller.claims.exp  # never more than is left
    clock.now = end - timedelta(seconds=left)  # its last second: no token could live a whole one
    with pytest.raises(SessionExpired) as refused:
        await service.auth.refresh(pair.refresh_token, WHO)
    assert refused.value.reason == "absolute_expired"


async def test_login_for_unknown_user_does_the_same_hashing_work(
    settings: object, clock: Clock, database_url: str
) -> None:
    """Unknown user and wrong password each cost exactly one argon2 verification."""

    class Counting(Passwords):
        verifications = 0

        def verify(self, stored: str | None, password: str) -> None:
            Counting.verifications += 1
            super().verify(stored, password)

    svc = Service(make_settings(database_url), passwords=Counting(time_cost=1, memory_cost=1024), clock=clock)
    await svc.start()
    try:
        await svc.auth.create_user("alice", PW, WHO)
        for name in ("alice", "nobody"):
            before = Counting.verifications
            with pytest.raises(InvalidCredentials):
                await svc.auth.login(name, "wrong password", WHO)
            assert Counting.verifications == before + 1
        assert (await events(svc)).count(("login", "failed")) == 2
    finally:
        await svc.close()


async def test_login_rehashes_when_parameters_change(database_url: str, clock: Clock) -> None:
    """A hash made with old parameters is replaced on the next successful login."""
    settings = make_settings(database_url)
    old = Service(settings, passwords=Passwords(time_cost=1, memory_cost=1024), clock=clock)
    await old.start()
    user = await old.auth.create_user("alice", PW, WHO)
    await old.close()
    new = Service(settings, passwords=Passwords(time_cost=2, memory_cost=2048), clock=clock)
    await new.start()
    try:
        await new.auth.login("alice", PW, WHO)
        async with new.store.read() as tx:
            stored = await tx.user_by_id(user.id)
        assert stored is not None
        assert "m=2048,t=2" in stored.password_hash
        assert not new.ctx.passwords.needs_rehash(stored.password_hash)
    finally:
        await new.close()


async def test_disabled_user_cannot_sign_in_and_loses_sessions(service: Service) -> None:
    """Disabling ends every session and makes the password useless, with the usual answer."""
    await service.auth.create_user("alice", PW, WHO)
    pair = await service.auth.login("alice", PW, WHO)
    assert await service.admin.disable_user("alice") == 1
    with pytest.raises(InvalidCredentials):
        await service.auth.login("alice", PW, WHO)
    with pytest.raises(SessionRevoked):
        await service.auth.refresh(pair.refresh_token, WHO)


async def test_audit_trail_of_a_session(service: Service, clock: Clock) -> None:
    """Register, login, refresh, replay and logout each leave one audit row, with client info."""
    await service.auth.create_user("alice", PW, WHO)
    pair = await service.auth.login("alice", PW, WHO)
    await service.auth.refresh(pair.refresh_token, WHO)
    await service.auth.refresh(pair.refresh_token, WHO)
    caller = await service.auth.authenticate(pair.access_token)
    await service.auth.logout(caller, None, WHO)
    assert await events(service) == [
        ("register", "ok"), ("login", "ok"), ("refresh", "ok"), ("refresh_replay", "ok"), ("logout", "ok"),
    ]  # fmt: skip
    async with service.store.read() as tx:
        rows = await tx.audit_events()
    assert all(r.ip == WHO.ip and r.user_agent == WHO.user_agent for r in rows)


async def test_concurrent_refreshes_in_the_service_advance_once(service: Service) -> None:
    """Twenty coroutines refreshing one token at once all get the same pair's refresh token."""
    await service.auth.create_user("alice", PW, WHO)
    pair = await service.auth.login("alice", PW, WHO)
    results = await asyncio.gather(*(service.auth.refresh(pair.refresh_token, WHO) for _ in range(20)))
    assert len({r.refresh_token for r in results}) == 1
    async with service.store.read() as tx:
        row = await tx.session(service.ctx.codec.decode(pair.refresh_token).session_id)
    assert row is not None
    assert row.generation == 1


async def test_password_hashing_runs_on_one_thread_per_core_off_the_loop(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashes run in keyturn's own pool, never on the event loop, with no more threads than cores."""
    seen: set[str] = set()
    original = service.ctx.passwords.hash

    def recording(password: str) -> str:
        seen.add(threading.current_thread().name)
        return original(password)

    monkeypatch.setattr(service.ctx.passwords, "hash", recording)
    await asyncio.gather(*(service.ctx.hash_password(f"{PW} {i}") for i in range(8)))
    assert seen
    assert all(name.startswith("keyturn-argon2") for name in seen)
    assert len(seen) <= len(os.sched_getaffinity(0))


async def test_device_names_lose_control_characters_and_lone_surrogates(service: Service) -> None:
    """A device name with NUL (PostgreSQL refuses it in text) or a lone surrogate is stored without
    them, on both databases, instead of failing the sign-in."""
    await service.auth.create_user("alice", PW, WHO)
    first = await service.auth.login("alice", PW, WHO, "a\x00b\ud800c\n")
    only_controls = await service.auth.login("alice", PW, WHO, "\x00\x07")
    async with service.store.read() as tx:
        names = {str(s.id): s.device_name for s in await tx.live_sessions(None, datetime(2000, 1, 1, tzinfo=UTC))}
    assert names[first.session_id] == "abc"
    assert names[only_controls.session_id] is None


async def test_a_closed_service_hashes_again_when_used_again(service: Service) -> None:
    """Closing stops the hashing threads; an app started again (a second lifespan) still hashes."""
    service.ctx.close()
    assert await service.ctx.hash_password(PW)
