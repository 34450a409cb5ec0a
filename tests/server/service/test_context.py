"""Integration tests of keyturn.server.service.context: what every use case shares, on a started
service over a real database (SQLite file and PostgreSQL).

Minting a token pair for a committed session state (lifetimes capped at the session's end, the
scope of the user's roles), the audit row written inside the use case's transaction (clipped, and
never undone by a failing observer), the state machine's view of a row, and the password threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from keyturn.core.errors import InvalidCredentials, TokenExpired
from keyturn.server.service import Client, Service
from keyturn.server.service.context import state_of
from keyturn.server.store import AuditRecord, SessionRecord, Standing, UserRecord
from tests.conftest import T0

pytestmark = pytest.mark.anyio


def session_record(created: timedelta = timedelta(0), generation: int = 3) -> SessionRecord:
    """A session signed in ``created`` before ``T0`` and last rotated at ``T0``."""
    return SessionRecord(
        id=uuid.uuid4(), user_id=uuid.uuid4(), generation=generation, created_at=T0 - created, rotated_at=T0,
        last_used_at=T0, client_id="keyturn", scope="profile", user_agent="ua", ip="127.0.0.1",
    )  # fmt: skip


async def test_issue_mints_a_pair_for_the_session_and_its_generation(service: Service) -> None:
    ctx = service.ctx
    record = session_record()
    pair = await ctx.issue(record, state_of(record), T0, user=Standing("", False))
    claims = await ctx.verify_access(pair.access_token, T0)
    assert (claims.sub, claims.sid, claims.scope) == (str(record.user_id), str(record.id), ("profile",))
    decoded = ctx.codec.decode(pair.refresh_token)
    assert (decoded.session_id, decoded.generation) == (record.id, 3)
    assert pair.expires_in == ctx.settings.access_token_ttl.total_seconds()
    assert pair.refresh_token_expires_in == ctx.settings.refresh_idle_ttl.total_seconds()
    assert (pair.session_id, pair.scope, pair.token_type) == (str(record.id), "profile", "Bearer")


async def test_issue_caps_both_lifetimes_at_the_sessions_end(service: Service) -> None:
    """90.5 s before its absolute end (floored to the second): neither token outlives the session."""
    ctx = service.ctx
    record = session_record(created=ctx.settings.session_max_ttl - timedelta(seconds=90, microseconds=500_000))
    pair = await ctx.issue(record, state_of(record), T0, user=Standing("", False))
    assert (pair.expires_in, pair.refresh_token_expires_in) == (90, 90)
    claims = await ctx.verify_access(pair.access_token, T0)
    assert claims.expires_at == T0 + timedelta(seconds=90)


async def test_issue_adds_the_scopes_of_the_users_roles(service: Service) -> None:
    record = session_record()
    pair = await service.ctx.issue(record, state_of(record), T0, user=Standing("admin unknown-role", False))
    assert pair.scope == "profile admin"


async def test_an_expired_access_token_is_refused_with_its_expiry(service: Service) -> None:
    ctx = service.ctx
    record = session_record()
    pair = await ctx.issue(record, state_of(record), T0, user=Standing("", False))
    later = T0 + ctx.settings.access_token_ttl + ctx.settings.leeway + timedelta(seconds=1)
    with pytest.raises(TokenExpired) as refused:
        await ctx.verify_access(pair.access_token, later)
    assert refused.value.code == "invalid_token"
    assert refused.value.expired_at == T0 + ctx.settings.access_token_ttl


async def test_audit_rows_are_part_of_the_use_cases_transaction(service: Service) -> None:
    """Written with the change they describe: a transaction that fails leaves no audit row either."""
    ctx = service.ctx

    async def audit_then_fail() -> None:
        async with ctx.store.write() as tx:
            await ctx.audit(tx, T0, "login", Client(ip="192.0.2.1"), outcome="refused", reason="bad_password")
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError, match="the change failed"):
        await audit_then_fail()
    async with ctx.store.read() as tx:
        assert await tx.audit_events(events=["login"]) == []


async def test_audit_clips_the_client_and_tells_every_observer(service: Service) -> None:
    ctx = service.ctx
    seen: list[AuditRecord] = []
    ctx.audit_observers.append(seen.append)
    async with ctx.store.write() as tx:
        await ctx.audit(tx, T0, "login", Client(ip="1" * 100, user_agent="u" * 1000), reason="r")
    async with ctx.store.read() as tx:
        (row,) = await tx.audit_events(events=["login"])
    assert (row.ip, row.user_agent) == ("1" * 64, "u" * 512)
    assert (row.event, row.outcome, row.detail) == ("login", "ok", {"reason": "r"})
    assert [(r.event, r.ip) for r in seen] == [("login", "1" * 64)]


async def test_a_failing_observer_is_logged_and_undoes_nothing(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = service.ctx

    def broken(_record: AuditRecord) -> None:
        raise ValueError("observer bug")

    seen: list[AuditRecord] = []
    ctx.audit_observers += [broken, seen.append]
    with caplog.at_level(logging.ERROR, logger="keyturn.service"):
        async with ctx.store.write() as tx:
            await ctx.audit(tx, T0, "logout", Client())
    async with ctx.store.read() as tx:
        assert len(await tx.audit_events(events=["logout"])) == 1
    assert len(seen) == 1  # the observers after the broken one are still told
    assert "audit observer failed on logout" in caplog.text


def test_state_of_a_session_sees_whether_its_user_is_enabled() -> None:
    record = session_record()
    user = UserRecord(record.user_id, "alice", "alice", "$argon2id$fake", T0, T0)
    assert state_of(record).user_enabled
    assert state_of(record, user).user_enabled
    assert not state_of(record, replace(user, disabled_at=T0)).user_enabled
    assert (state_of(record).id, state_of(record).generation, state_of(record).rotated_at) == (record.id, 3, T0)


async def test_password_threads_start_again_after_close(service: Service) -> None:
    """An app may be stopped and started again in one process (tests, reloaders)."""
    ctx = service.ctx
    stored = await ctx.hash_password("correct horse battery staple")
    ctx.close()
    await ctx.verify_password(stored, "correct horse battery staple")
    with pytest.raises(InvalidCredentials):
        await ctx.verify_password(stored, "not the password")
    with pytest.raises(InvalidCredentials):
        await ctx.verify_password(None, "correct horse battery staple")  # no such user: same answer


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
    await asyncio.gather(*(service.ctx.hash_password(f"{'correct horse battery staple'} {i}") for i in range(8)))
    assert seen
    assert all(name.startswith("keyturn-argon2") for name in seen)
    assert len(seen) <= len(os.sched_getaffinity(0))
