"""Integration tests of keyturn.server.service.refresh: rotation, grace replay and reuse detection
carried out on a real database (SQLite file and PostgreSQL), with a hand-moved clock."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from keyturn.core.errors import InvalidToken, MalformedRefreshToken, RefreshTokenReused, SessionExpired, SessionRevoked
from keyturn.core.refresh import RefreshToken
from keyturn.core.sessions import Action, Outcome, SessionBounds
from keyturn.server.service import Service
from keyturn.server.service.refresh import _Raced
from keyturn.server.store import Standing
from tests.conftest import Clock
from tests.server.service.usecases import PW, WHO, events

pytestmark = pytest.mark.anyio


async def test_reuse_revocation_is_committed_although_the_refresh_fails(service: Service, clock: Clock) -> None:
    """The refusal raises, yet the revocation and its audit row are already in the database."""
    await service.auth.create_user("alice", PW, WHO)
    first = await service.auth.login("alice", PW, WHO)
    second = await service.auth.refresh(first.refresh_token, WHO)
    clock.advance(30)
    with pytest.raises(RefreshTokenReused):
        await service.auth.refresh(first.refresh_token, WHO)
    async with service.store.read() as tx:
        sessions = await tx.live_sessions(None, SessionBounds.at(clock(), service.ctx.lifetimes))
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


async def test_a_token_read_once_at_the_edge_is_not_read_again(service: Service) -> None:
    """The HTTP edge reads the refresh token once (rate-limit key, CSRF) and hands the result in."""
    await service.auth.create_user("alice", PW, WHO)
    pair = await service.auth.login("alice", PW, WHO)
    presented = service.auth.read_refresh_token(pair.refresh_token)
    assert presented == RefreshToken(uuid.UUID(pair.session_id), 0)
    rotated = await service.auth.refresh(presented, WHO)
    assert service.auth.read_refresh_token(rotated.refresh_token).generation == 1
    with pytest.raises(MalformedRefreshToken):
        service.auth.read_refresh_token("kt_rt_not-a-token")


async def test_a_disabled_users_refresh_ends_the_session_and_records_why(service: Service) -> None:
    """The refusal outcome that ends a session (a sign-in that raced a disable) is carried out with
    its audit row, both committed before the refusal."""
    user = await service.auth.create_user("alice", PW, WHO)
    pair = await service.auth.login("alice", PW, WHO)
    async with service.store.write() as tx:
        await tx.disable_user(user.id, service.ctx.clock())  # disabled without ending its sessions
    with pytest.raises(SessionRevoked) as refused:
        await service.auth.refresh(pair.refresh_token, WHO)
    assert refused.value.reason == "user_disabled"
    async with service.store.read() as tx:
        row = await tx.session(uuid.UUID(pair.session_id))
        audit = await tx.audit_events(events=["refresh"])
    assert row is not None
    assert row.revoke_reason == "user_disabled"
    assert (audit[0].outcome, audit[0].detail) == ("refused", {"reason": "user_disabled"})


async def test_the_read_and_decide_path_rotates_as_the_one_statement_path_does(service: Service) -> None:
    """The fast path is an optimisation of the rule: reading the row and carrying out
    ``decide_refresh``'s ROTATE writes the same generation, times and audit row; a rotation whose
    compare-and-swap finds the row moved on is retried, never applied twice."""
    await service.auth.create_user("alice", PW, WHO)
    pair = await service.auth.login("alice", PW, WHO)
    presented = service.auth.read_refresh_token(pair.refresh_token)
    now = service.ctx.clock()
    async with service.store.write() as tx:
        outcome, (record, user) = await service.auth._decide(tx, presented, now, WHO)
    assert (outcome.action, outcome.refusal) == (Action.ROTATE, None)
    assert (record.generation, record.rotated_at, record.last_used_at, user) == (1, now, now, Standing("", False))
    async with service.store.read() as tx:
        stored = await tx.session(presented.session_id)
    assert stored is not None
    assert (stored.generation, stored.rotated_at) == (1, now)
    assert (await events(service))[-1] == ("refresh", "ok")
    stale = replace(stored, generation=0)
    with pytest.raises(_Raced):
        async with service.store.write() as tx:
            await service.auth._carry_out(tx, Outcome(Action.ROTATE), stale, now, WHO)
