"""Integration tests of keyturn.client's ``KeyturnAuth`` (``_auth``) ending sessions and failing
safely, against a real keyturn server process on loopback: logout, a revoked session, wrong
passwords, an unreachable or misbehaving issuer, a private token file, and no token or password
in any log or repr.
"""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path

import httpx
import pytest

from keyturn.client import FileTokenStore, KeyturnAuth, MemoryTokenStore, Tokens
from keyturn.core.errors import InvalidCredentials, InvalidGrant, Unavailable
from tests.client.issuer import Clock, User, me
from tests.helpers import PASSWORD, SESSION_ENDED, assert_refused
from tests.servers import Server, free_port

pytestmark = pytest.mark.server


def test_file_store_is_private_and_tokens_never_leak(
    server: Server, user: User, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The token file, its lock and new directories are owner-only; no token or password in logs or reprs."""
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    store = FileTokenStore(tmp_path / "new" / "tokens.json")
    auth = KeyturnAuth(server.url, store, clock=clock)
    secrets = [PASSWORD]
    secrets += _pair(auth.login(user.name, PASSWORD, device_name="pytest"))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    clock.offset = 5
    with httpx.Client(auth=auth) as http:
        assert http.get(f"{server.url}/v1/auth/me").status_code == 200
    refreshed = store.load()
    assert refreshed is not None
    secrets += _pair(refreshed)
    assert secrets[1] != secrets[3]
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(f"{store.path}.lock").stat().st_mode) & 0o077 == 0
    with pytest.raises(InvalidCredentials) as refused:
        auth.login(user.name, PASSWORD + "!")
    shown = [caplog.text, repr(auth), repr(store), repr(refreshed), str(refreshed), str(refused.value)]
    auth.logout()
    shown += [caplog.text, repr(auth), repr(store)]
    assert any("session" in record.getMessage() for record in caplog.records)
    for secret in secrets:
        for text in shown:
            assert secret not in text


def _pair(tokens: Tokens) -> list[str]:
    return [tokens.access_token, tokens.refresh_token]


def test_logout_ends_the_session_and_clears_the_store(server: Server, user: User, tmp_path: Path) -> None:
    """After logout the old access token is refused by /me and the token file is gone."""
    store = FileTokenStore(tmp_path / "tokens.json")
    auth = KeyturnAuth(server.url, store)
    old = auth.login(user.name, PASSWORD)
    assert me(server, old.access_token).status_code == 200
    auth.logout()
    assert store.load() is None
    assert not store.path.exists()
    assert_refused(me(server, old.access_token), 401, "invalid_token", SESSION_ENDED)
    auth.logout()  # nothing left to end: not an error


@pytest.mark.anyio
async def test_alogout_ends_the_session_and_clears_the_store(server: Server, user: User) -> None:
    """The async logout does the same."""
    store = MemoryTokenStore()
    auth = KeyturnAuth(server.url, store)
    old = await auth.alogin(user.name, PASSWORD)
    await auth.alogout()
    assert store.load() is None
    assert_refused(me(server, old.access_token), 401, "invalid_token", SESSION_ENDED)


@pytest.mark.anyio
async def test_wrong_password_raises_invalid_credentials(server: Server, user: User) -> None:
    """login and alogin with a wrong password raise InvalidCredentials and store nothing."""
    store = MemoryTokenStore()
    auth = KeyturnAuth(server.url, store)
    with pytest.raises(InvalidCredentials):
        auth.login(user.name, "not the password")
    with pytest.raises(InvalidCredentials):
        await auth.alogin(user.name, "not the password")
    assert store.load() is None


def test_revoked_session_raises_invalid_grant_on_next_refresh(server: Server, user: User) -> None:
    """After logout-all from another client, the next refresh raises InvalidGrant and clears the store."""
    clock = Clock()
    store = MemoryTokenStore()
    auth = KeyturnAuth(server.url, store, clock=clock)
    auth.login(user.name, PASSWORD)
    other = KeyturnAuth(server.url).login(user.name, PASSWORD)
    revoked = httpx.post(f"{server.url}/v1/auth/logout-all", headers={"Authorization": f"Bearer {other.access_token}"})
    assert revoked.status_code == 204
    clock.offset = 5
    with httpx.Client(auth=auth) as http, pytest.raises(InvalidGrant, match="session"):
        http.get(f"{server.url}/v1/auth/me")
    assert store.load() is None
    with httpx.Client(auth=auth) as http, pytest.raises(InvalidGrant, match="log in"):
        http.get(f"{server.url}/v1/auth/me")


def test_unreachable_issuer_raises_unavailable() -> None:
    """Nothing listening at the issuer: login raises Unavailable, not an httpx error."""
    auth = KeyturnAuth(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(Unavailable):
        auth.login("nobody", PASSWORD)


def test_unusable_token_response_raises_unavailable() -> None:
    """An issuer answering 200 with something that is not a token response: Unavailable, nothing stored."""
    junk = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200, json={"access_token": "x"})))
    auth = KeyturnAuth("http://issuer.test", client=junk)
    with junk, pytest.raises(Unavailable, match="unusable token response: 'token_type'") as refused:
        auth.login("alice", PASSWORD)
    assert refused.value.reason == "bad_response"
    assert auth.store.load() is None


@pytest.mark.anyio
async def test_a_cancelled_async_waiter_does_not_keep_the_store_locked(server: Server) -> None:
    """Cancelling a call that waits for the store lock leaves the lock free once its holder is done."""
    store = MemoryTokenStore(Tokens("a", "r", issued_at=0, expires_at=900, session_id="s"), timeout=1)
    auth = KeyturnAuth(server.url, store)
    with store.lock():
        waiting = asyncio.create_task(auth.alogout())
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    await asyncio.sleep(0.1)  # the worker thread takes the lock, then hands it back
    with store.lock():
        assert store.load() is not None
