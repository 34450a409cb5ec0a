"""Integration tests of keyturn.server.service.signin: registration and password sign-in on a real
database (SQLite file and PostgreSQL), with a hand-moved clock."""

from __future__ import annotations

import pytest

from keyturn.core.errors import InvalidCredentials, SessionRevoked
from keyturn.core.passwords import Passwords
from keyturn.core.sessions import SessionBounds
from keyturn.server.service import Service
from tests.conftest import Clock, make_settings
from tests.server.service.usecases import PW, WHO, events

pytestmark = pytest.mark.anyio


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
        stored = await new.admin.user("alice")
        assert stored.id == user.id
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


async def test_device_names_lose_control_characters_and_lone_surrogates(service: Service) -> None:
    """A device name with NUL (PostgreSQL refuses it in text) or a lone surrogate is stored without
    them, on both databases, instead of failing the sign-in."""
    await service.auth.create_user("alice", PW, WHO)
    first = await service.auth.login("alice", PW, WHO, "a\x00b\ud800c\n")
    only_controls = await service.auth.login("alice", PW, WHO, "\x00\x07")
    async with service.store.read() as tx:
        live = await tx.live_sessions(None, SessionBounds.at(service.ctx.clock(), service.ctx.lifetimes))
        names = {str(s.id): s.device_name for s in live}
    assert names[first.session_id] == "abc"
    assert names[only_controls.session_id] is None
