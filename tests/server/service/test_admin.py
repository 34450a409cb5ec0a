"""Integration tests of the operator use cases on a real SQLite file, with a hand-moved clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from keyturn.core.errors import InsufficientScope, InvalidCredentials, NotFound
from keyturn.server.service import Client, Service
from keyturn.server.store import AuditRecord
from tests.conftest import T0, Clock

pytestmark = pytest.mark.anyio

PW = "correct horse battery staple"
WHO = Client(ip="198.51.100.4", user_agent="test-agent")


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def seen(records: list[AuditRecord]) -> list[tuple[str, str, int]]:
    """(event, outcome, seconds after T0) of each record, in the order given."""
    return [(r.event, r.outcome, int((r.at - T0).total_seconds())) for r in records]


@pytest.fixture
async def history(service: Service, clock: Clock) -> Service:
    """Alice and Bob register at 0 s, then: 60 alice logs in, 120 alice fails, 180 bob logs in,
    240 alice refreshes, 300 an unknown name fails."""
    await service.auth.create_user("alice", PW, WHO)
    await service.auth.create_user("bob", PW, WHO)
    clock.advance(60)
    pair = await service.auth.login("alice", PW, WHO)
    clock.advance(60)
    with pytest.raises(InvalidCredentials):
        await service.auth.login("alice", "wrong password!", WHO)
    clock.advance(60)
    await service.auth.login("bob", PW, WHO)
    clock.advance(60)
    await service.auth.refresh(pair.refresh_token, WHO)
    clock.advance(60)
    with pytest.raises(InvalidCredentials):
        await service.auth.login("mallory", PW, WHO)
    return service


async def test_audit_lists_everything_newest_first(history: Service) -> None:
    """With no filter, every event comes back, newest first, with its client details."""
    records = await history.admin.audit()
    assert seen(records) == [
        ("login", "failed", 300), ("refresh", "ok", 240), ("login", "ok", 180), ("login", "failed", 120),
        ("login", "ok", 60), ("register", "ok", 0), ("register", "ok", 0),
    ]  # fmt: skip
    assert records[0].user_id is None
    assert all((r.ip, r.user_agent) == (WHO.ip, WHO.user_agent) for r in records)


async def test_audit_filters_by_user(history: Service) -> None:
    """A username selects that user's events only, whatever its case."""
    alice = await history.admin.user("alice")
    records = await history.admin.audit("Alice")
    assert seen(records) == [
        ("refresh", "ok", 240),
        ("login", "failed", 120),
        ("login", "ok", 60),
        ("register", "ok", 0),
    ]
    assert {r.user_id for r in records} == {alice.id}


async def test_audit_filters_by_event_list(history: Service) -> None:
    """Only the named events come back; several names combine, and combine with the user filter."""
    logins = await history.admin.audit(events=["login"])
    assert [r.outcome for r in logins] == ["failed", "ok", "failed", "ok"]
    both = await history.admin.audit("alice", ["login", "refresh"])
    assert [r.event for r in both] == ["refresh", "login", "login"]
    assert await history.admin.audit(events=["no_such_event"]) == []


async def test_audit_since_is_inclusive_and_until_exclusive(history: Service) -> None:
    """`since` keeps an event at exactly that time; `until` drops one at exactly that time."""
    window = await history.admin.audit(since=at(60), until=at(180))
    assert seen(window) == [("login", "failed", 120), ("login", "ok", 60)]
    assert seen(await history.admin.audit(since=at(240))) == [("login", "failed", 300), ("refresh", "ok", 240)]
    assert len(await history.admin.audit(until=at(60))) == 2
    assert await history.admin.audit(since=at(301)) == []


async def test_audit_since_accepts_any_time_zone(history: Service) -> None:
    """An aware time in another zone means the same instant."""
    plus_two = timezone(timedelta(hours=2))
    records = await history.admin.audit(since=at(240).astimezone(plus_two))
    assert len(records) == 2


async def test_audit_limit_keeps_the_newest(history: Service) -> None:
    """The limit cuts the oldest events off, not the newest."""
    assert seen(await history.admin.audit(limit=2)) == [("login", "failed", 300), ("refresh", "ok", 240)]
    assert len(await history.admin.audit(limit=1)) == 1


async def test_audit_orders_by_time_not_by_insertion(service: Service, clock: Clock) -> None:
    """A row committed late with an earlier time (another instance's clock) sorts by its time."""
    async with service.store.write() as tx:
        await tx.audit(AuditRecord(at=clock() + timedelta(seconds=10), event="late", outcome="ok"))
        await tx.audit(AuditRecord(at=clock() + timedelta(seconds=5), event="early", outcome="ok"))
    assert [r.event for r in await service.admin.audit(events=["early", "late"])] == ["late", "early"]


async def test_audit_unknown_user_is_not_found(history: Service) -> None:
    """An unknown username raises NotFound instead of returning an empty log."""
    with pytest.raises(NotFound):
        await history.admin.audit("mallory")


async def test_audit_refuses_naive_times_and_bad_limits(service: Service) -> None:
    """Naive datetimes and limits outside 1..10,000 are programming errors."""
    with pytest.raises(ValueError, match="aware"):
        await service.admin.audit(since=T0.replace(tzinfo=None))
    for limit in (0, -1, 10_001):
        with pytest.raises(ValueError, match="limit"):
            await service.admin.audit(limit=limit)


async def test_a_key_rotation_over_http_rechecks_the_role_in_its_own_transaction(service: Service) -> None:
    """The admin role is checked again where the key is written: a role revoked after the request
    was authenticated rotates nothing (check and write are one transaction)."""
    await service.auth.create_user("root", PW, WHO)
    root = await service.admin.user("root")
    with pytest.raises(InsufficientScope):
        await service.admin.rotate_key(timedelta(0), by=root.id)
    assert len(await service.admin.keys()) == 1
    assert await service.admin.grant_role("root", "admin")
    await service.admin.rotate_key(timedelta(0), by=root.id)
    await service.admin.disable_user("root")
    with pytest.raises(InsufficientScope):
        await service.admin.rotate_key(timedelta(0), by=root.id)
    assert len(await service.admin.keys()) == 2


async def test_roles_are_granted_once_and_unknown_roles_refused(service: Service) -> None:
    """grant_role and revoke_role say whether anything changed; an unknown role is a ValueError and
    an unknown user NotFound."""
    await service.auth.create_user("root", PW, WHO)
    assert await service.admin.grant_role("root", "admin") is True
    assert await service.admin.grant_role("root", "admin") is False
    assert (await service.admin.user("root")).roles == "admin"
    with pytest.raises(ValueError, match="unknown role"):
        await service.admin.grant_role("root", "owner")
    with pytest.raises(NotFound):
        await service.admin.revoke_role("nobody", "admin")
    assert await service.admin.revoke_role("root", "admin") is True
    assert await service.admin.revoke_role("root", "admin") is False


async def test_inspect_says_how_the_session_of_a_token_stands(service: Service, clock: Clock) -> None:
    """``inspect`` reports live, ended (why and when), expired by idleness or by the absolute
    lifetime, and unknown; a token is usable only valid and live."""
    who = Client()
    await service.auth.create_user("ines", "correct horse battery staple", who)
    live = await service.auth.login("ines", "correct horse battery staple", who)
    report = await service.admin.inspect(live.access_token)
    assert (report.session, report.usable) == ("live", True)
    await service.auth.logout(None, live.refresh_token, who)
    ended = await service.admin.inspect(live.access_token)
    assert ended.session == f"ended: logout at {clock().isoformat(timespec='seconds')}"
    assert (ended.error, ended.usable) == (None, False)
    idle = await service.auth.login("ines", "correct horse battery staple", who)
    clock.advance(service.settings.refresh_idle_ttl.total_seconds() + 1)
    assert (await service.admin.inspect(idle.access_token)).session == "expired: idle"
    kept = pair = await service.auth.login("ines", "correct horse battery staple", who)
    for _ in range(4):  # refreshed every 6 days: never idle...
        clock.advance(6 * 86400)
        pair = await service.auth.refresh(pair.refresh_token, who)
    clock.advance(6 * 86400)  # ...and 30 days after sign-in
    assert (await service.admin.inspect(kept.access_token)).session == "expired: absolute"
    assert (await service.admin.inspect("e30.e30.c2ln")).session == "unknown"
