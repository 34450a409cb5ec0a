"""Integration tests of ``keyturn.client.ClientCredentialsAuth`` against a real keyturn server on
loopback (2 s access tokens), with clients registered by the real `keyturn clients add`. The API
it calls is an ``httpx.MockTransport`` that records what it is sent; every call to the issuer is real."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Callable

import httpx
import pytest

from keyturn.client import ClientCredentialsAuth
from keyturn.core.errors import InvalidClient, InvalidRequest
from tests.client.issuer import Clock
from tests.servers import KEYTURN, Server

API = "http://api.test/reports"


def register(server: Server, *options: str) -> tuple[str, str]:
    """A fresh client registered with `keyturn --dev clients add` in the server's directory: (id, secret)."""
    client_id = f"job-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    done = subprocess.run(
        [str(KEYTURN), "--dev", "clients", "add", client_id, "--scope", "orders:read orders:write", *options],
        cwd=server.cwd, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return client_id, done.stdout.strip().splitlines()[-1]


def grants(server: Server, client_id: str) -> int:
    """How many access tokens the server issued to ``client_id`` (its audit rows)."""
    with sqlite3.connect(f"file:{server.cwd / 'keyturn.db'}?mode=ro", uri=True) as db:
        query = (
            "SELECT count(*) FROM audit_events WHERE event = 'client_token' AND json_extract(detail, '$.client_id') = ?"
        )
        count: int = db.execute(query, (client_id,)).fetchone()[0]
    return count


def api(seen: list[str], refuse: Callable[[str], bool] = lambda _: False) -> httpx.MockTransport:
    """The API: records each Authorization header; answers 401 invalid_token when ``refuse`` says so."""

    def handle(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        seen.append(token)
        if refuse(token):
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return httpx.Response(200, json={"ok": True})

    return httpx.MockTransport(handle)


def introspect(server: Server, token: str) -> dict[str, object]:
    """Ask the server about ``token`` as a resource server (a client with no grant) would."""
    reader, secret = register(server, "--no-grant")
    answer = httpx.post(f"{server.url}/oauth/introspect", data={"token": token}, auth=(reader, secret))
    assert answer.status_code == 200, answer.text
    found: dict[str, object] = answer.json()
    return found


def test_one_grant_serves_requests_until_the_token_is_due(server: Server) -> None:
    """The first request gets a token (Basic, as registered; the scope asked for); the next ones
    reuse it; once it is due (the clock moved) a new one is got, with no request refused."""
    client_id, secret = register(server)
    clock, seen = Clock(), list[str]()
    auth = ClientCredentialsAuth(server.url, client_id, secret, scope="orders:read", clock=clock)
    with httpx.Client(auth=auth, transport=api(seen)) as http:
        assert [http.get(API).status_code for _ in range(3)] == [200, 200, 200]
        clock.offset = 2
        assert http.get(API).status_code == 200
    assert grants(server, client_id) == 2
    assert seen[0] == seen[1] == seen[2] != seen[3]
    assert introspect(server, seen[3])["scope"] == "orders:read"


def test_a_refused_token_gets_one_new_grant_and_one_retry(server: Server) -> None:
    """A 401 invalid_token from the API: a new token, the request sent again once; refused again: returned as is."""
    client_id, secret = register(server)
    seen: list[str] = []
    auth = ClientCredentialsAuth(server.url, client_id, secret)
    with httpx.Client(auth=auth, transport=api(seen, refuse=lambda t: len(seen) == 1)) as http:
        assert http.get(API).status_code == 200
    assert (len(seen), grants(server, client_id)) == (2, 2)
    assert seen[0] != seen[1]
    always: list[str] = []
    with httpx.Client(auth=auth, transport=api(always, refuse=lambda t: True)) as http:
        assert http.get(API).status_code == 401
    assert len(always) == 2


def test_client_secret_post_as_registered_and_the_other_method_refused(server: Server) -> None:
    """A client registered for client_secret_post gets tokens that way; sending Basic instead is
    refused with the server's reason, and no token is issued."""
    client_id, secret = register(server, "--auth-method", "client_secret_post")
    seen: list[str] = []
    post = ClientCredentialsAuth(server.url, client_id, secret, auth_method="client_secret_post")
    with httpx.Client(auth=post, transport=api(seen)) as http:
        assert http.get(API).status_code == 200
    basic = ClientCredentialsAuth(server.url, client_id, secret)
    with httpx.Client(auth=basic, transport=api(seen)) as http, pytest.raises(InvalidClient) as refused:
        http.get(API)
    assert refused.value.description.endswith("Authenticate with client_secret_post, as registered.")
    assert (len(seen), grants(server, client_id)) == (1, 1)


def test_a_wrong_secret_and_a_scope_beyond_the_client_are_refused(server: Server) -> None:
    """Each refusal is the server's, as an error the program can catch; the API is never called."""
    client_id, secret = register(server)
    seen: list[str] = []
    wrong = ClientCredentialsAuth(server.url, client_id, "kt_cs_wrong")
    with httpx.Client(auth=wrong, transport=api(seen)) as http, pytest.raises(InvalidClient) as refused:
        http.get(API)
    assert refused.value.description.endswith("Client authentication failed.")
    wide = ClientCredentialsAuth(server.url, client_id, secret, scope="orders:read admin")
    with httpx.Client(auth=wide, transport=api(seen)) as http, pytest.raises(InvalidRequest) as beyond:
        http.get(API)
    assert beyond.value.description == "Not granted: admin."
    assert seen == []


@pytest.mark.anyio
async def test_twenty_concurrent_async_requests_share_one_grant(server: Server) -> None:
    """Concurrent requests of one async client wait for one grant; ``aclose`` revokes the token."""
    client_id, secret = register(server)
    seen: list[str] = []
    auth = ClientCredentialsAuth(server.url, client_id, secret)
    async with httpx.AsyncClient(auth=auth, transport=api(seen)) as http:
        answers = await asyncio.gather(*(http.get(API) for _ in range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    assert (len(set(seen)), grants(server, client_id)) == (1, 1)
    assert introspect(server, seen[0])["active"] is True
    await auth.aclose()
    assert introspect(server, seen[0]) == {"active": False}


def test_a_machine_has_no_password_sign_in(server: Server) -> None:
    """login is refused with a TypeError that says why, and nothing is sent."""
    auth = ClientCredentialsAuth(server.url, "job", "secret")
    with pytest.raises(TypeError, match="no password sign-in"):
        auth.login("alice", "password")
    assert "secret" not in repr(auth)
