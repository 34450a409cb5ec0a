"""Integration tests of keyturn.server.service.password: changing a password from a session, on a
real database (SQLite file and PostgreSQL)."""

from __future__ import annotations

import pytest

from keyturn.core.errors import InvalidCredentials, InvalidToken, RefreshTokenReused
from keyturn.server.service import Service
from tests.server.service.usecases import PW, WHO, events

pytestmark = pytest.mark.anyio
NEW = "another correct horse battery"


async def test_a_change_rekeys_this_session_and_ends_the_others(service: Service) -> None:
    """The refresh token from before the change is reuse at once (no grace); the other sessions
    end; the new password signs in and the old one does not."""
    await service.auth.create_user("alice", PW, WHO)
    here = await service.auth.login("alice", PW, WHO)
    elsewhere = await service.auth.login("alice", PW, WHO)
    caller = await service.auth.authenticate(here.access_token)
    changed = await service.auth.change_password(caller, PW, NEW, WHO)
    assert service.auth.read_refresh_token(changed.refresh_token).generation == 2
    with pytest.raises(InvalidToken):
        await service.auth.authenticate(elsewhere.access_token)
    with pytest.raises(RefreshTokenReused):
        await service.auth.refresh(here.refresh_token, WHO)
    with pytest.raises(InvalidCredentials):
        await service.auth.login("alice", PW, WHO)
    await service.auth.login("alice", NEW, WHO)


async def test_wrong_current_passwords_end_the_session_when_the_budget_is_spent(service: Service) -> None:
    """Each wrong current password is charged and audited; the last one the budget allows ends
    the session (audited as password_guessing), and the next attempt is refused as ended."""
    await service.auth.create_user("alice", PW, WHO)
    caller = await service.auth.authenticate((await service.auth.login("alice", PW, WHO)).access_token)
    budget = service.settings.password_change_failures
    for _ in range(budget):
        with pytest.raises(InvalidCredentials) as refused:
            await service.auth.change_password(caller, "wrong password!", NEW, WHO)
        assert refused.value.reason == "wrong_current_password"
    with pytest.raises(InvalidToken) as ended:
        await service.auth.change_password(caller, PW, NEW, WHO)
    assert ended.value.reason == "session_ended"
    trail = await events(service)
    assert trail.count(("password_changed", "failed")) == budget
    assert trail.count(("password_guessing", "revoked")) == 1
