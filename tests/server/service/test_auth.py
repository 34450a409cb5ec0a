"""Integration tests of keyturn.server.service.auth: the use cases work together, behind one
``AuthService``, on a real database (SQLite file and PostgreSQL)."""

from __future__ import annotations

import pytest

from keyturn.server.service import Service
from tests.conftest import Clock
from tests.server.service.usecases import PW, WHO, events

pytestmark = pytest.mark.anyio


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
