"""Integration tests of keyturn.client's ``KeyturnAuth`` (``_auth``) staying signed in, against a real
keyturn server process on loopback.

The server issues 2-second access tokens with no leeway, so a client that failed to refresh in
time would be refused. Refreshes are counted in the server's own audit table; a few tests move
the client's clock (its ``clock`` parameter) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from keyturn.client import FileTokenStore, KeyturnAuth, MemoryTokenStore
from tests.client.issuer import Clock, User, audit
from tests.helpers import PASSWORD
from tests.servers import Server

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[2]


def test_sync_client_stays_signed_in_across_expiries(server: Server, user: User) -> None:
    """Over several 2 s token lifetimes every call succeeds, refreshed ahead of expiry (no 401 at all)."""
    auth = KeyturnAuth(server.url, MemoryTokenStore())
    auth.login(user.name, PASSWORD)
    statuses: list[int] = []
    with httpx.Client(auth=auth, event_hooks={"response": [lambda r: statuses.append(r.status_code)]}) as http:
        deadline = time.monotonic() + 4  # two refreshes are due by 2 x (2 s - 2/3 s) + polling
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
        deadline = time.monotonic() + 4  # two refreshes are due by 2 x (2 s - 2/3 s) + polling
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
