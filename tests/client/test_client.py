"""Integration tests of keyturn.client against a real keyturn server process on loopback.

The server issues 2-second access tokens with no leeway, so a client that failed to refresh in
time would be refused. Refreshes are counted in the server's own audit table; a few tests move
the client's clock (its ``clock`` parameter) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from keyturn.client import FileTokenStore, KeyturnAuth, MemoryTokenStore, Tokens
from keyturn.core.errors import ConfigurationError, InvalidCredentials, InvalidGrant, Unavailable
from tests.helpers import PASSWORD
from tests.servers import Server, free_port, keyturn_server

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`keyturn --dev serve` with 2 s access tokens, no verification leeway and a 10 s reuse grace."""
    cwd = tmp_path_factory.mktemp("client")
    with keyturn_server(cwd, "--dev", access_token_ttl="2", reuse_grace="10s", leeway="0s") as running:
        yield running


@dataclasses.dataclass
class User:
    name: str
    id: str


@pytest.fixture
def user(server: Server) -> User:
    """A fresh account, so that audit rows can be counted per test."""
    name = f"client-{uuid.uuid4().hex[:12]}"
    response = httpx.post(f"{server.url}/v1/auth/register", json={"username": name, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return User(name, response.json()["id"])


class Clock:
    """The real time plus an offset the test moves, to make tokens look due without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def audit(server: Server, user: User, event: str) -> int:
    """How many successful ``event`` rows the server wrote for ``user``."""
    with sqlite3.connect(f"file:{server.cwd / 'keyturn.db'}?mode=ro", uri=True) as db:
        row = db.execute(
            "SELECT count(*) FROM audit_events WHERE event = ? AND user_id = ? AND outcome != 'refused'",
            (event, uuid.UUID(user.id).hex),
        ).fetchone()
    count: int = row[0]
    return count


def me(server: Server, access_token: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/auth/me", headers={"Authorization": f"Bearer {access_token}"})


def test_sync_client_stays_signed_in_across_expiries(server: Server, user: User) -> None:
    """Over several 2 s token lifetimes every call succeeds, refreshed ahead of expiry (no 401 at all)."""
    auth = KeyturnAuth(server.url, MemoryTokenStore())
    auth.login(user.name, PASSWORD)
    statuses: list[int] = []
    with httpx.Client(auth=auth, event_hooks={"response": [lambda r: statuses.append(r.status_code)]}) as http:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            response = http.get(f"{server.url}/v1/auth/me")
            assert response.status_code == 200, response.text
            assert response.json()["username"] == user.name
            time.sleep(0.25)
    assert set(statuses) == {200}
    assert audit(server, user, "refresh") >= 2


@pytest.mark.anyio
async def test_async_client_stays_signed_in_across_expiries(server: Server, user: User) -> None:
    """The same with httpx.AsyncClient and alogin."""
    auth = KeyturnAuth(server.url, MemoryTokenStore())
    await auth.alogin(user.name, PASSWORD)
    statuses: list[int] = []

    async def seen(response: httpx.Response) -> None:
        statuses.append(response.status_code)

    async with httpx.AsyncClient(auth=auth, event_hooks={"response": [seen]}) as http:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            response = await http.get(f"{server.url}/v1/auth/me")
            assert response.status_code == 200, response.text
            await asyncio.sleep(0.25)
    assert set(statuses) == {200}
    assert audit(server, user, "refresh") >= 2


def test_refused_access_token_triggers_one_refresh_and_one_retry(server: Server, user: User) -> None:
    """A stored access token the server refuses (401 invalid_token) is refreshed once and the call retried once."""
    store = MemoryTokenStore()
    KeyturnAuth(server.url, store).login(user.name, PASSWORD)
    tokens = store.load()
    assert tokens is not None
    store.save(dataclasses.replace(tokens, access_token=tokens.access_token[:-4] + "AAAA"))
    seen: list[int] = []
    with httpx.Client(
        auth=KeyturnAuth(server.url, store), event_hooks={"response": [lambda r: seen.append(r.status_code)]}
    ) as http:
        response = http.get(f"{server.url}/v1/auth/me")
    assert response.status_code == 200
    assert seen == [401, 200]
    assert audit(server, user, "refresh") == 1


def test_a_token_refused_twice_is_not_retried_again(server: Server, user: User) -> None:
    """A resource server that refuses every token gets one retry, then its 401 is returned."""
    auth = KeyturnAuth(server.url)
    auth.login(user.name, PASSWORD)
    calls: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["Authorization"])
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    with httpx.Client(auth=auth, transport=httpx.MockTransport(refuse)) as http:
        response = http.get("http://api.test/things")
    assert response.status_code == 401
    assert len(calls) == 2
    assert calls[0] != calls[1]
    assert audit(server, user, "refresh") == 1


@pytest.mark.anyio
async def test_async_token_refused_twice_is_not_retried_again(server: Server, user: User) -> None:
    """The same through httpx.AsyncClient."""
    auth = KeyturnAuth(server.url)
    await auth.alogin(user.name, PASSWORD)
    calls: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["Authorization"])
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(refuse)) as http:
        response = await http.get("http://api.test/things")
    assert response.status_code == 401
    assert len(calls) == 2
    assert audit(server, user, "refresh") == 1


@pytest.mark.anyio
async def test_twenty_concurrent_async_requests_share_one_refresh(server: Server, user: User) -> None:
    """20 concurrent requests that all find the token due cause exactly one refresh request."""
    clock = Clock()
    posted: list[str] = []

    async def count(request: httpx.Request) -> None:
        posted.append(request.url.path)

    async with httpx.AsyncClient(event_hooks={"request": [count]}) as issuer:
        auth = KeyturnAuth(server.url, MemoryTokenStore(), clock=clock, async_client=issuer)
        await auth.alogin(user.name, PASSWORD)
        clock.offset = 5
        async with httpx.AsyncClient(auth=auth) as http:
            responses = await asyncio.gather(*(http.get(f"{server.url}/v1/auth/me") for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert posted == ["/v1/auth/login", "/v1/auth/refresh"]
    assert audit(server, user, "refresh") == 1
    assert audit(server, user, "refresh_replay") == 0


def test_twenty_threads_share_one_refresh(server: Server, user: User, tmp_path: Path) -> None:
    """20 threads with one sync client and a file store that all find the token due cause one refresh."""
    clock = Clock()
    posted: list[str] = []
    with httpx.Client(event_hooks={"request": [lambda request: posted.append(request.url.path)]}) as issuer:
        auth = KeyturnAuth(server.url, FileTokenStore(tmp_path / "tokens.json"), clock=clock, client=issuer)
        auth.login(user.name, PASSWORD)
        clock.offset = 5
        with httpx.Client(auth=auth) as http, ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(lambda _: http.get(f"{server.url}/v1/auth/me"), range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert posted == ["/v1/auth/login", "/v1/auth/refresh"]
    assert audit(server, user, "refresh") == 1
    assert audit(server, user, "refresh_replay") == 0


WORKER = """
import json, sys, time
import httpx
from keyturn.client import FileTokenStore, KeyturnAuth

issuer, path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
statuses = []
with httpx.Client(auth=KeyturnAuth(issuer, FileTokenStore(path))) as http:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        statuses.append(http.get(issuer + "/v1/auth/me").status_code)
        time.sleep(0.02)
print(json.dumps(statuses))
"""


def test_processes_sharing_a_file_store_never_trip_reuse_detection(server: Server, user: User, tmp_path: Path) -> None:
    """4 processes calling /me through one FileTokenStore across expiries: all 200, no reuse, session alive."""
    path = tmp_path / "shared" / "tokens.json"
    KeyturnAuth(server.url, FileTokenStore(path)).login(user.name, PASSWORD)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, server.url, str(path), "3"], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [w.communicate(timeout=60)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * 4
    statuses = [s for out in outputs for s in json.loads(out)]
    assert len(statuses) > 40
    assert set(statuses) == {200}
    assert audit(server, user, "reuse_detected") == 0
    assert audit(server, user, "refresh_replay") == 0
    assert 2 <= audit(server, user, "refresh") <= 8  # one per lifetime, not one per process
    with httpx.Client(auth=KeyturnAuth(server.url, FileTokenStore(path))) as http:
        assert http.get(f"{server.url}/v1/auth/me").status_code == 200


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


def test_file_store_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    """A token file with group or other permission bits is refused, not used."""
    store = FileTokenStore(tmp_path / "tokens.json")
    store.save(Tokens("a", "r", issued_at=0, expires_at=900, session_id="s"))
    assert store.load() == Tokens("a", "r", issued_at=0, expires_at=900, session_id="s")
    store.path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="0644"):
        store.load()


def test_file_store_ignores_a_damaged_file(tmp_path: Path) -> None:
    """A token file that is not a token record reads as no session."""
    store = FileTokenStore(tmp_path / "tokens.json")
    store.save(Tokens("a", "r", issued_at=0, expires_at=900, session_id="s"))
    store.path.write_text('{"format": 99}')
    assert store.load() is None


def test_logout_ends_the_session_and_clears_the_store(server: Server, user: User, tmp_path: Path) -> None:
    """After logout the old access token is refused by /me and the token file is gone."""
    store = FileTokenStore(tmp_path / "tokens.json")
    auth = KeyturnAuth(server.url, store)
    old = auth.login(user.name, PASSWORD)
    assert me(server, old.access_token).status_code == 200
    auth.logout()
    assert store.load() is None
    assert not store.path.exists()
    assert me(server, old.access_token).status_code == 401
    auth.logout()  # nothing left to end: not an error


@pytest.mark.anyio
async def test_alogout_ends_the_session_and_clears_the_store(server: Server, user: User) -> None:
    """The async logout does the same."""
    store = MemoryTokenStore()
    auth = KeyturnAuth(server.url, store)
    old = await auth.alogin(user.name, PASSWORD)
    await auth.alogout()
    assert store.load() is None
    assert me(server, old.access_token).status_code == 401


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


def test_a_store_locked_too_long_raises_unavailable(tmp_path: Path) -> None:
    """A second FileTokenStore on the same file waits for the lock, then gives up with Unavailable."""
    holder = FileTokenStore(tmp_path / "tokens.json")
    waiter = FileTokenStore(tmp_path / "tokens.json", timeout=0.2)
    with holder.lock(), pytest.raises(Unavailable, match="locked"), waiter.lock():
        pass
    with waiter.lock():
        pass


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


def test_refresh_is_due_a_third_of_the_lifetime_or_thirty_seconds_before_expiry() -> None:
    """Margin = min(30 s, lifetime/3): a 3 s token is due at 2 s, a 15 min token 30 s before expiry."""
    short = Tokens("a", "r", issued_at=100, expires_at=103, session_id="s")
    assert not short.needs_refresh(101.9)
    assert short.needs_refresh(102.0)
    long = Tokens("a", "r", issued_at=0, expires_at=900, session_id="s")
    assert not long.needs_refresh(869.9)
    assert long.needs_refresh(870.0)


def test_token_response_is_validated_without_echoing_values() -> None:
    """A token response missing its refresh token is refused; the message names the field only."""
    body = {"access_token": "secret-at", "token_type": "Bearer", "expires_in": 60, "session_id": "s"}
    with pytest.raises(ValueError, match="'refresh_token'") as refused:
        Tokens.from_response(body, sent_at=0)
    assert "secret-at" not in str(refused.value)
