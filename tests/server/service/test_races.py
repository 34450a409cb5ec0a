"""Integration tests of the use cases under concurrency, on a real SQLite file and a real PostgreSQL.

A security decision and the write it guards must be one transaction: a sign-in whose password
check started before a password change (or before the account was disabled) must not open a
session afterwards, and no refresh may keep a disabled user's session going (review finding 3).

Two kinds of test: deterministic ones hold one sign-in's hash check at a gate while the test
changes the password or disables the account, then let it go; and the reviewer's reproduction,
many staggered sign-ins around one change, whose outcome is checked against the database.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator

import pytest

from keyturn.core.errors import EmailNotVerified, InvalidCredentials, SessionRevoked
from keyturn.core.passwords import Passwords
from keyturn.server.service import Client, Service
from keyturn.server.service import context as context_module
from tests.conftest import Clock, make_settings
from tests.helpers import execute, fetch

pytestmark = pytest.mark.anyio

OLD = "correct horse battery staple"
NEW = "a whole new passphrase"
WHO = Client(ip="198.51.100.4", user_agent="race")


class GatedPasswords(Passwords):
    """Cheap argon2id; once armed, the next verification waits at a gate until released, so the
    test can act while a sign-in's hash check is in flight."""

    def __init__(self, memory_cost: int = 1024) -> None:
        super().__init__(time_cost=1, memory_cost=memory_cost, parallelism=1)
        self.entered = threading.Event()
        self.release = threading.Event()
        self._armed = False
        self._lock = threading.Lock()

    def arm(self) -> None:
        self._armed = True

    def verify(self, stored: str | None, password: str) -> None:
        with self._lock:
            gated, self._armed = self._armed, False
        if gated:
            self.entered.set()
            assert self.release.wait(30), "the test never released the gate"
        super().verify(stored, password)


@pytest.fixture
async def gated(
    database_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Service, GatedPasswords]]:
    # The gated check holds a hashing thread; the change it races needs another one.
    monkeypatch.setattr(context_module, "_cores", lambda: 4)
    passwords = GatedPasswords()
    svc = Service(make_settings(database_url), passwords=passwords, clock=clock)
    await svc.start()
    yield svc, passwords
    passwords.release.set()
    await svc.close()


async def live_sessions(database_url: str) -> set[str]:
    rows = await fetch(database_url, "SELECT id FROM sessions WHERE revoked_at IS NULL")
    return {str(uuid.UUID(str(r[0]))) for r in rows}


async def gated_login(svc: Service, gate: GatedPasswords) -> asyncio.Task[object]:
    """Start a sign-in with the old password and return once its hash check is under way."""
    gate.arm()
    task: asyncio.Task[object] = asyncio.create_task(svc.auth.login("alice", OLD, WHO))
    assert await asyncio.to_thread(gate.entered.wait, 10)
    return task


async def test_a_sign_in_checked_before_a_password_change_opens_no_session(
    gated: tuple[Service, GatedPasswords], database_url: str
) -> None:
    """Regression (review finding 3): the old password was right when the sign-in checked it and
    is wrong when it would commit: the change wins, the sign-in is refused and audited, and the
    only live session is the one that changed the password."""
    svc, gate = gated
    await svc.auth.create_user("alice", OLD, WHO)
    changer = await svc.auth.login("alice", OLD, WHO)
    racing = await gated_login(svc, gate)
    await svc.auth.change_password(await svc.auth.authenticate(changer.access_token), OLD, NEW, WHO)
    gate.release.set()
    with pytest.raises(InvalidCredentials):
        await racing
    assert await live_sessions(database_url) == {changer.session_id}
    rows = await fetch(database_url, "SELECT outcome, detail FROM audit_events WHERE event = 'login' ORDER BY id")
    assert [r[0] for r in rows] == ["ok", "failed"]
    assert "password_changed" in str(rows[-1][1])


async def test_a_sign_in_checked_before_a_disable_opens_no_session(
    gated: tuple[Service, GatedPasswords], database_url: str
) -> None:
    """Regression (review finding 3): an account disabled while a sign-in checks its password
    gets no session from that sign-in."""
    svc, gate = gated
    await svc.auth.create_user("alice", OLD, WHO)
    racing = await gated_login(svc, gate)
    await svc.admin.disable_user("alice")
    gate.release.set()
    with pytest.raises(InvalidCredentials):
        await racing
    assert await live_sessions(database_url) == set()


async def test_a_sign_in_checked_before_its_address_changes_opens_no_session(
    database_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where sign-in needs a verified address: an account whose address is replaced (so no longer
    verified) while a sign-in checks its password gets no session from that sign-in."""
    monkeypatch.setattr(context_module, "_cores", lambda: 4)
    gate = GatedPasswords()
    settings = make_settings(database_url, require_verified_email=True, mail_url="smtp://127.0.0.1:9?starttls=off")
    svc = Service(settings, passwords=gate, clock=clock)
    await svc.start()
    try:
        alice = await svc.auth.create_user("alice", OLD, WHO, "alice@example.com")
        async with svc.store.write() as tx:
            assert await tx.mark_email_verified(alice.id, "alice@example.com", clock())
        racing = await gated_login(svc, gate)
        await svc.auth.set_email("alice", "alice@example.org")
        gate.release.set()
        with pytest.raises(EmailNotVerified):
            await racing
        assert await live_sessions(database_url) == set()
    finally:
        gate.release.set()
        await svc.close()


async def test_a_rehash_checked_before_a_password_change_does_not_overwrite_it(
    database_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (review finding 3): a sign-in that would upgrade an old-parameter hash does not
    write it over a password changed meanwhile (the old password stays wrong)."""
    monkeypatch.setattr(context_module, "_cores", lambda: 4)
    settings = make_settings(database_url)
    old_params = Service(settings, passwords=Passwords(time_cost=1, memory_cost=1024), clock=clock)
    await old_params.start()
    await old_params.auth.create_user("alice", OLD, WHO)
    changer = await old_params.auth.login("alice", OLD, WHO)
    await old_params.close()
    gate = GatedPasswords(memory_cost=2048)  # other parameters: every old hash needs a rehash
    svc = Service(settings, passwords=gate, clock=clock)
    await svc.start()
    try:
        racing = await gated_login(svc, gate)
        await svc.auth.change_password(await svc.auth.authenticate(changer.access_token), OLD, NEW, WHO)
        gate.release.set()
        with pytest.raises(InvalidCredentials):
            await racing
        with pytest.raises(InvalidCredentials):
            await svc.auth.login("alice", OLD, WHO)
        assert (await svc.auth.login("alice", NEW, WHO)).access_token
    finally:
        gate.release.set()
        await svc.close()


async def test_no_refresh_keeps_a_disabled_users_session_going(service: Service, database_url: str) -> None:
    """Regression (review finding 3): a live session of a disabled user (what a sign-in that raced
    a disable used to leave) is refused on both rotation paths, the current token (one statement)
    and the previous one inside the grace window (read and decide), and ends there."""
    await service.auth.create_user("alice", OLD, WHO)
    first = await service.auth.login("alice", OLD, WHO)
    second = await service.auth.login("alice", OLD, WHO)
    rotated = await service.auth.refresh(second.refresh_token, WHO)
    await execute(database_url, "UPDATE users SET disabled_at = created_at")  # disabled, sessions left live
    for token in (first.refresh_token, second.refresh_token):  # current token; previous token in grace
        with pytest.raises(SessionRevoked) as refused:
            await service.auth.refresh(token, WHO)
        assert refused.value.reason == "user_disabled"
    assert await live_sessions(database_url) == set()
    with pytest.raises(SessionRevoked):
        await service.auth.refresh(rotated.refresh_token, WHO)


@pytest.mark.parametrize("change", ["password", "disable"])
async def test_staggered_sign_ins_around_a_change_leave_no_session_behind(
    database_url: str, clock: Clock, change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review's reproduction: sign-ins with the old password, started a few milliseconds apart
    around one password change (or disable), with argon2id costly enough that their checks
    overlap it. Afterwards no session opened with the old password is live, and none refreshes."""
    monkeypatch.setattr(context_module, "_cores", lambda: 4)
    svc = Service(make_settings(database_url), passwords=Passwords(time_cost=1, memory_cost=8192), clock=clock)
    await svc.start()
    try:
        await svc.auth.create_user("alice", OLD, WHO)
        changer = await svc.auth.login("alice", OLD, WHO)
        caller = await svc.auth.authenticate(changer.access_token)

        async def sign_in(delay: float) -> object:
            await asyncio.sleep(delay)  # staggering the attempts, not waiting for an expiry
            try:
                return await svc.auth.login("alice", OLD, WHO)
            except InvalidCredentials as exc:
                return exc

        async def act() -> None:
            await asyncio.sleep(0.012)
            if change == "password":
                await svc.auth.change_password(caller, OLD, NEW, WHO)
            else:
                await svc.admin.disable_user("alice")

        results = await asyncio.gather(*(sign_in(i * 0.001) for i in range(26)), act())
        kept = {changer.session_id} if change == "password" else set()
        assert await live_sessions(database_url) == kept
        for pair in results:
            if pair is not None and not isinstance(pair, Exception):
                with pytest.raises(SessionRevoked):
                    await svc.auth.refresh(pair.refresh_token, WHO)  # type: ignore[attr-defined]
    finally:
        await svc.close()
