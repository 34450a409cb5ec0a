"""Integration tests of the error edge: bad input, size limits, headers, and a database outage.

The outage is real: another connection holds SQLite's write lock, so keyturn's
writes time out exactly as they would against a stuck database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from keyturn.core.passwords import Passwords
from keyturn.server.http import create_app
from keyturn.server.service import Service
from tests.conftest import Clock, make_settings
from tests.helpers import PASSWORD, bearer, fetch, refresh, register, signed_in

pytestmark = pytest.mark.anyio

SECRET_LOOKING = "hunter2-do-not-echo"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"username": "alice"}, "'password' is required"),
        ({"username": "alice", "password": 12345678}, "'password' has the wrong type"),
        ({"username": ["a"], "password": SECRET_LOOKING}, "'username' has the wrong type"),
        ({"username": "alice", "password": SECRET_LOOKING, "admin": True}, "'admin' is not allowed"),
        ([1, 2, 3], "must be a JSON object"),
        ("just a string", "must be a JSON object"),
    ],
)
async def test_bad_bodies_are_400_and_never_echo_input(client: httpx.AsyncClient, body: object, fragment: str) -> None:
    """FastAPI's 422 (which echoes input) is replaced by 400 invalid_request naming the field."""
    response = await client.post("/v1/auth/login", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert fragment in response.json()["error_description"]
    assert SECRET_LOOKING not in response.text


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"{not json", "application/json"), (b"username=a&password=b", "application/x-www-form-urlencoded"), (b"", "")],
)
async def test_non_json_bodies_are_400(client: httpx.AsyncClient, content: bytes, content_type: str) -> None:
    """Broken JSON, forms and empty bodies get a clear 400."""
    response = await client.post("/v1/auth/login", content=content, headers={"content-type": content_type})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_oversized_body_is_413_by_declared_length(client: httpx.AsyncClient) -> None:
    """A body over KEYTURN_MAX_BODY_BYTES is refused before it is parsed."""
    big = {"username": "alice", "password": "x" * (70 * 1024)}
    response = await client.post("/v1/auth/login", json=big)
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"


async def test_oversized_streamed_body_is_413(client: httpx.AsyncClient) -> None:
    """A chunked body without Content-Length is counted as it arrives."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024

    response = await client.post("/v1/auth/login", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


async def test_huge_password_is_refused_fast_and_not_truncated(client: httpx.AsyncClient) -> None:
    """Over the 1024-character limit: 400, no hashing, and not silently truncated."""
    await register(client)
    response = await client.post("/v1/auth/login", json={"username": "alice", "password": PASSWORD + "x" * 2000})
    assert response.status_code == 400
    assert "at most 1024" in response.json()["error_description"]


async def test_unknown_route_and_method_are_json(client: httpx.AsyncClient) -> None:
    """404 and 405 are JSON in the same error shape."""
    missing = await client.get("/v1/nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = await client.put("/v1/auth/login")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"


async def test_security_headers_on_every_response(client: httpx.AsyncClient) -> None:
    """nosniff, no-referrer, frame denial and a CSP, on success and error alike."""
    for response in (await client.get("/healthz"), await client.get("/nope"), await client.get("/v1/auth/me")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


FUZZ = [
    ("POST", "/v1/auth/register", {"username": "\x00", "password": PASSWORD}),
    ("POST", "/v1/auth/register", {"username": "a" * 10000, "password": PASSWORD}),
    ("POST", "/v1/auth/register", b'{"username": "ok", "password": "\\ud800\\udfff\\ud800abcdefgh"}'),
    ("POST", "/v1/auth/login", b'{"username": "\\ud800", "password": "abcdefghij"}'),
    ("POST", "/v1/auth/login", b'{"username": "alice", "password": "abcdefghij", "password": "x"}'),
    ("POST", "/v1/auth/login", {"username": "", "password": ""}),
    ("POST", "/v1/auth/login", {"username": "alice", "password": None}),
    ("POST", "/v1/auth/login", {"username": "alice", "password": PASSWORD, "device_name": "d" * 500}),
    ("POST", "/v1/auth/refresh", {"refresh_token": None}),
    ("POST", "/v1/auth/refresh", {"refresh_token": 7}),
    ("POST", "/v1/auth/refresh", {"refresh_token": "kt_rt_" + "\u00e9" * 60}),
    ("POST", "/v1/auth/logout", {"refresh_token": "garbage"}),
    ("POST", "/v1/auth/logout", [1]),
    ("DELETE", "/v1/auth/sessions/%00", None),
    ("POST", "/v1/auth/password", {"current_password": 1}),
]


@pytest.mark.parametrize(("method", "path", "body"), FUZZ)
async def test_odd_input_never_answers_500(client: httpx.AsyncClient, method: str, path: str, body: object) -> None:
    """Whatever arrives, the answer is a 4xx in the error shape, never a 500 or a traceback."""
    tokens = await signed_in(client, "fuzz")
    if isinstance(body, bytes):
        headers = {**bearer(tokens), "content-type": "application/json"}
        response = await client.request(method, path, content=body, headers=headers)
    else:
        response = await client.request(method, path, json=body, headers=bearer(tokens))
    assert 400 <= response.status_code < 500, response.text
    assert set(response.json()) == {"error", "error_description"}
    assert "Traceback" not in response.text


@asynccontextmanager
async def database_locked(database_url: str) -> AsyncIterator[None]:
    """Another client holds the write lock (SQLite) or an exclusive lock on the tables (PostgreSQL)."""
    if database_url.startswith("sqlite"):
        lock = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        return
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE users, sessions IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


@pytest.fixture
async def outage_client(database_url: str, clock: Clock, fast_passwords: Passwords) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a short database timeout, so a held lock is an outage quickly."""
    settings = make_settings(database_url, db_timeout="0.3")
    svc = Service(settings, passwords=fast_passwords, clock=clock)
    await svc.start()
    transport = httpx.ASGITransport(app=create_app(settings, service=svc))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c
    await svc.close()


async def test_database_outage_at_login_is_503_and_issues_nothing(
    outage_client: httpx.AsyncClient, database_url: str
) -> None:
    """The session cannot be persisted, so no token is issued; 503 with Retry-After."""
    await register(outage_client)
    async with database_locked(database_url):
        response = await outage_client.post("/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["retry-after"] == "1"
    assert "access_token" not in response.text
    assert await fetch(database_url, "SELECT count(*) FROM sessions") == [(0,)]


async def test_database_outage_at_refresh_keeps_the_token_usable(
    outage_client: httpx.AsyncClient, database_url: str
) -> None:
    """A refresh that could not commit rotated nothing: the same token works once the database is back."""
    tokens = await signed_in(outage_client)
    async with database_locked(database_url):
        failed = await refresh(outage_client, tokens["refresh_token"])
    assert failed.status_code == 503
    assert "refresh_token" not in failed.json()
    recovered = await refresh(outage_client, tokens["refresh_token"])
    assert recovered.status_code == 200
    assert await fetch(database_url, "SELECT generation FROM sessions") == [(1,)]


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 40 + b"1" + b"}" * 40])
async def test_deeply_nested_json_is_refused_before_parsing(client: httpx.AsyncClient, body: bytes) -> None:
    """Nesting beyond 16 levels is a 400 with a clear message; brackets inside strings do not count."""
    response = await client.post("/v1/auth/login", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error_description"]
    flat = await client.post("/v1/auth/login", json={"username": "[[[[[[[[[[[[[[[[[[[[", "password": "{" * 40})
    assert flat.status_code == 401
