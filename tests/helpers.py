"""Small helpers shared by the HTTP and service tests."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

PASSWORD = "correct horse battery staple"
# An access token (JWS compact form), a refresh token, a client secret or a mailed link's token, as
# they would appear in a log or a row.
TOKEN_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*|kt_(?:rt|cs|et)_[A-Za-z0-9_-]+")


# The answer to an access token that parsed and verified but whose session is over (logged out,
# revoked, ended by reuse detection): a refusal after parsing, where a malformed token's answer is
# MalformedToken.description.
SESSION_ENDED = "The session of this access token has ended."


def assert_refused(response: httpx.Response, status: int, error: str, description: str | None = None) -> dict[str, Any]:
    """Assert that ``response`` is the refusal ``error`` with ``status`` and, when the reason
    matters, the ``error_description`` that states it (the error classes' ``description``); the body."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    if description is not None:
        assert body["error_description"] == description, body
    return body


async def audit_trail(database_url: str, user_id: str | None = None) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every audit row (of one user, if given) as ``(event, outcome, detail)``, oldest first."""
    sql = "SELECT event, outcome, detail, user_id FROM audit_events ORDER BY at, id"
    rows = await fetch(database_url, sql)
    wanted = None if user_id is None else user_id.replace("-", "")
    return [
        (event, outcome, json.loads(detail) if isinstance(detail, str) else detail)
        for event, outcome, detail, user in rows
        if wanted is None or (user is not None and str(user).replace("-", "") == wanted)
    ]


async def body_size(receive: Callable[[], Awaitable[Mapping[str, Any]]]) -> int:
    """Read an ASGI request body to its end (a test app's part); how many bytes it had."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    return size


async def register(client: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/v1/auth/register", json={"username": username, "password": password})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(
    client: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD, **extra: Any
) -> dict[str, Any]:
    response = await client.post("/v1/auth/login", json={"username": username, "password": password, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def signed_in(client: httpx.AsyncClient, username: str = "alice") -> dict[str, Any]:
    await register(client, username)
    return await login(client, username)


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {tokens['access_token']}"}


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})


async def execute(database_url: str, sql: str, **params: Any) -> None:
    """Run one statement on a connection of its own and commit it (to set up a stored state)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql), params)
    finally:
        await engine.dispose()


async def fetch(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of one query, on a connection of its own (to look at what a test's server stored)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in await conn.execute(text(sql), params)]
    finally:
        await engine.dispose()
