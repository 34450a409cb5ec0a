"""Integration tests of keyturn.server.http.hot in-process, on a real database (SQLite file and
PostgreSQL): the plain endpoints of ``GET /v1/auth/me`` and ``POST /v1/auth/refresh`` answer every
kind of request exactly as the documented routes do. Each scenario runs twice, on an app with the
plain routes and on one without them (the same settings and database), and every answer is
compared: status, every header in order, and the body (with the values that belong to each app's
own user and session masked, and the same length)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from keyturn.core.passwords import Passwords
from keyturn.server.config import Settings
from keyturn.server.http import create_app
from keyturn.server.http.cookies import REFRESH_COOKIE
from keyturn.server.http.hot import HOT_ROUTES
from keyturn.server.service import Service
from tests.conftest import Clock, make_settings
from tests.helpers import bearer, signed_in

pytestmark = pytest.mark.anyio

Scenario = Callable[[httpx.AsyncClient, str], Awaitable[list[httpx.Response]]]
# Of each app's own user and session: masked before the bodies are compared.
VARYING = frozenset({"sub", "username", "session_id", "exp", "iat", "auth_time", "access_token", "refresh_token"})


async def answers(
    settings: Settings, clock: Clock, passwords: Passwords, scenario: Scenario, *, plain: bool
) -> list[Any]:
    svc = Service(settings, passwords=passwords, clock=clock)
    await svc.start()
    app = create_app(settings, service=svc)
    if not plain:
        app.router.routes[:] = [r for r in app.router.routes if r not in HOT_ROUTES]
    assert sum(r in HOT_ROUTES for r in app.router.routes) == (len(HOT_ROUTES) if plain else 0)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.issuer) as client:
            responses = await scenario(client, "alice" if plain else "bobby")
    finally:
        await svc.close()
    return [(r.status_code, r.headers.multi_items(), len(r.content), masked(r.content)) for r in responses]


def masked(content: bytes) -> object:
    try:
        body = json.loads(content)
    except ValueError:
        return content
    return [(k, None if k in VARYING else v) for k, v in body.items()] if isinstance(body, dict) else body


async def same_answers(database_url: str, clock: Clock, passwords: Passwords, scenario: Scenario) -> list[int]:
    """Run ``scenario`` on both apps; assert every answer is the same; their statuses."""
    settings = make_settings(database_url, rate_limit_global="12/minute")
    plain = await answers(settings, clock, passwords, scenario, plain=True)
    documented = await answers(settings, clock, passwords, scenario, plain=False)
    assert plain == documented
    return [status for status, *_ in plain]


async def test_me_answers_as_the_documented_route(database_url: str, clock: Clock, fast_passwords: Passwords) -> None:
    """200, no token, a malformed one, a forged one, HEAD, an ended session, the ceiling reached."""

    async def scenario(client: httpx.AsyncClient, name: str) -> list[httpx.Response]:
        ok = bearer(await signed_in(client, name))  # 2 of the 12 the ceiling lets through
        forged = {"authorization": ok["authorization"][:-4] + "AAAA"}
        sent = [await client.get("/v1/auth/me", headers=h) for h in (ok, {}, {"authorization": "Bearer"}, forged)]
        sent.append(await client.head("/v1/auth/me", headers=ok))
        await client.post("/v1/auth/logout", headers=ok)
        sent += [await client.get("/v1/auth/me", headers=ok) for _ in range(6)]  # HEAD's 405 counted none
        return sent

    statuses = await same_answers(database_url, clock, fast_passwords, scenario)
    assert statuses == [200, 401, 401, 401, 405, 401, 401, 401, 401, 401, 429]


async def test_refresh_answers_as_the_documented_route(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """A rotation, its replay inside the grace window, the reuse after it (the session revoked);
    a malformed token; and what the documented route takes itself: no body, another content type,
    an unknown member, a refresh cookie without its CSRF checks, a JSON null; then the ceiling."""

    async def scenario(client: httpx.AsyncClient, name: str) -> list[httpx.Response]:
        first = (await signed_in(client, name))["refresh_token"]
        sent = [await client.post("/v1/auth/refresh", json={"refresh_token": first})]
        sent.append(await client.post("/v1/auth/refresh", json={"refresh_token": first}))  # replay, in grace
        clock.advance(60)
        sent.append(await client.post("/v1/auth/refresh", json={"refresh_token": first}))  # reuse
        sent.append(await client.post("/v1/auth/refresh", json={"refresh_token": "kt_rt_nope"}))
        sent.append(await client.post("/v1/auth/refresh"))
        sent.append(await client.post("/v1/auth/refresh", content=b'{"refresh_token": "x"}'))
        sent.append(await client.post("/v1/auth/refresh", json={"refresh_token": first, "more": 1}))
        cookie = {"cookie": f"{REFRESH_COOKIE}={first}", "content-type": "application/json"}
        sent.append(await client.post("/v1/auth/refresh", content=b"{}", headers=cookie))
        sent.append(
            await client.post("/v1/auth/refresh", content=b"null", headers={"content-type": "application/json"})
        )
        sent += [await client.post("/v1/auth/refresh", json={"refresh_token": "kt_rt_nope"}) for _ in range(2)]
        return sent

    statuses = await same_answers(database_url, clock, fast_passwords, scenario)
    assert statuses[:4] == [200, 200, 401, 401]
    assert all(status >= 400 for status in statuses[4:])
    assert statuses[-2:] == [401, 429]  # the 12th request passes the ceiling, the 13th does not
