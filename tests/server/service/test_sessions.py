"""Integration tests of keyturn.server.service.sessions: authenticated use and sign-out on a real
database (SQLite file and PostgreSQL), with a hand-moved clock."""

from __future__ import annotations

import pytest

from keyturn.core.errors import InsufficientScope, InvalidRequest, InvalidToken, MissingToken, NotFound
from keyturn.core.passwords import Passwords
from keyturn.server.service import Service
from tests.conftest import Clock, make_settings
from tests.server.service.usecases import PW, WHO, events

pytestmark = pytest.mark.anyio


async def test_a_token_of_an_ended_session_is_refused_as_ended(service: Service) -> None:
    """After logout the access token still verifies, but its session is over: session_revoked."""
    await service.auth.create_user("alice", PW, WHO)
    pair = await service.auth.login("alice", PW, WHO)
    caller = await service.auth.authenticate(pair.access_token)
    assert str(caller.session.id) == pair.session_id
    await service.auth.logout(caller, None, WHO)
    with pytest.raises(InvalidToken) as refused:
        await service.auth.authenticate(pair.access_token)
    assert refused.value.reason == "session_ended"


async def test_liveness_is_the_one_rule_for_requests_and_the_device_list(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """A session idle past its lifetime is neither listed nor accepted, though its access token
    (here longer-lived than the idle lifetime) has not expired."""
    settings = make_settings(database_url, refresh_idle_ttl="10m", access_token_ttl="30m")
    service = Service(settings, passwords=fast_passwords, clock=clock)
    await service.start()
    try:
        await service.auth.create_user("alice", PW, WHO)
        idle = await service.auth.login("alice", PW, WHO)
        clock.advance(9 * 60)
        fresh = await service.auth.login("alice", PW, WHO)
        caller = await service.auth.authenticate(fresh.access_token)
        assert [str(s.id) for s in await service.auth.sessions(caller)] == [fresh.session_id, idle.session_id]
        clock.advance(61)
        assert [str(s.id) for s in await service.auth.sessions(caller)] == [fresh.session_id]
        with pytest.raises(InvalidToken) as refused:
            await service.auth.authenticate(idle.access_token)
        assert refused.value.reason == "session_ended"
    finally:
        await service.close()


async def test_logout_refuses_a_refresh_token_of_another_session(service: Service) -> None:
    """One party's access token never ends another party's session."""
    await service.auth.create_user("alice", PW, WHO)
    mine = await service.auth.login("alice", PW, WHO)
    other = await service.auth.login("alice", PW, WHO)
    caller = await service.auth.authenticate(mine.access_token)
    with pytest.raises(InvalidRequest) as refused:
        await service.auth.logout(caller, other.refresh_token, WHO)
    assert refused.value.reason == "session_mismatch"
    with pytest.raises(MissingToken):
        await service.auth.logout(None, None, WHO)
    await service.auth.logout(None, other.refresh_token, WHO)
    assert [str(s.id) for s in await service.auth.sessions(caller)] == [mine.session_id]
    assert (await events(service))[-1] == ("logout", "ok")


async def test_revoke_session_finds_only_the_callers_own_live_sessions(service: Service) -> None:
    await service.auth.create_user("alice", PW, WHO)
    await service.auth.create_user("bob", PW, WHO)
    alice = await service.auth.authenticate((await service.auth.login("alice", PW, WHO)).access_token)
    bobs = await service.auth.login("bob", PW, WHO)
    for sid in (bobs.session_id, "not-a-uuid"):
        with pytest.raises(NotFound):
            await service.auth.revoke_session(alice, sid, WHO)
    await service.auth.revoke_session(alice, str(alice.session.id), WHO)
    with pytest.raises(NotFound):
        await service.auth.revoke_session(alice, str(alice.session.id), WHO)


async def test_the_admin_api_needs_the_scope_and_the_role_now(service: Service) -> None:
    """A token without the admin scope is refused; so is one whose user lost the role since."""
    await service.auth.create_user("alice", PW, WHO)
    plain = await service.auth.authenticate((await service.auth.login("alice", PW, WHO)).access_token)
    with pytest.raises(InsufficientScope) as refused:
        service.auth.require_admin(plain)
    assert refused.value.required == ("admin",)
    await service.admin.grant_role("alice", "admin")
    admin_pair = await service.auth.login("alice", PW, WHO)
    admin = await service.auth.authenticate(admin_pair.access_token)
    service.auth.require_admin(admin)
    await service.admin.revoke_role("alice", "admin")
    with pytest.raises(InsufficientScope):
        service.auth.require_admin(await service.auth.authenticate(admin_pair.access_token))


async def test_rename_session_cleans_the_name_and_finds_only_the_callers_live_sessions(service: Service) -> None:
    """rename_session stores the name as sign-in would (no control characters or lone surrogates,
    128 characters), audits session_renamed, and refuses another user's or an ended session."""
    await service.auth.create_user("alice", PW, WHO)
    await service.auth.create_user("bob", PW, WHO)
    alice = await service.auth.authenticate((await service.auth.login("alice", PW, WHO)).access_token)
    other = await service.auth.login("alice", PW, WHO, "phone")
    bobs = await service.auth.login("bob", PW, WHO)
    renamed = await service.auth.rename_session(alice, other.session_id, "a\x00b\ud800c\n" + "x" * 200, WHO)
    assert (str(renamed.id), renamed.device_name) == (other.session_id, "abc" + "x" * 125)
    assert (await events(service))[-1] == ("session_renamed", "ok")
    assert (await service.auth.rename_session(alice, other.session_id, "\x07", WHO)).device_name is None
    await service.auth.revoke_session(alice, other.session_id, WHO)
    for sid in (bobs.session_id, other.session_id, "not-a-uuid"):
        with pytest.raises(NotFound):
            await service.auth.rename_session(alice, sid, "mine", WHO)
    assert [s.device_name for s in await service.auth.sessions(alice)] == [None]
