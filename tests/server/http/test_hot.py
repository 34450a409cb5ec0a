"""Integration tests of keyturn.server.http.hot in-process, on a real database (SQLite file and
PostgreSQL): the plain endpoints of ``GET /v1/auth/me`` and ``POST /v1/auth/refresh`` answer every
kind of request exactly as the documented routes do. Each scenario runs twice, on an app with the
plain routes and on one without them (the same settings and database), and every answer is
compared: status, every header in order, and the body (with the values that belong to each app's
own user and session masked, and the same length)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from keyturn.core.passwords import Passwords
from keyturn.server.config import Settings
from keyturn.server.http import create_app, hot
from keyturn.server.http.cookies import REFRESH_COOKIE
from keyturn.server.http.hot import Endpoint, HotPath
from keyturn.server.service import Service
from keyturn.server.service.sessions import SessionUse
from tests.conftest import Clock, make_settings
from tests.helpers import bearer, signed_in

pytestmark = pytest.mark.anyio

Scenario = Callable[[httpx.AsyncClient, str], Awaitable[list[httpx.Response]]]
# Of each app's own user and session: masked before the bodies are compared.
VARYING = frozenset({"sub", "username", "session_id", "exp", "iat", "auth_time", "access_token", "refresh_token"})


METRICS_TOKEN = "hot-metrics-0123456789abcdef0123456789abcdef"
COUNTED = ("keyturn_http_requests_total", "keyturn_http_request_duration_seconds_count", "keyturn_refreshes_total")


async def answers(
    settings: Settings, clock: Clock, passwords: Passwords, scenario: Scenario, *, plain: bool
) -> tuple[list[Any], int]:
    """Every answer of ``scenario`` (with, last, what the metrics counted of it) on an app with
    ``HotPath`` or without it; and how many requests ``HotPath`` took."""
    svc = Service(settings, passwords=passwords, clock=clock)
    await svc.start()
    app = create_app(settings, service=svc)
    if not plain:
        app.user_middleware = [m for m in app.user_middleware if cast(object, m.cls) is not HotPath]
    assert [cast(object, m.cls) for m in app.user_middleware].count(HotPath) == (1 if plain else 0)
    taken = 0

    def spy(endpoint: Endpoint) -> Endpoint:
        async def counted(request: Request, body: bytes) -> Response | None:
            nonlocal taken
            answer, request.scope["endpoint"] = None, endpoint  # what HotPath sets, for the metrics
            try:
                answer = await endpoint(request, body)
            finally:
                taken += answer is not None or sys.exc_info()[0] is not None
            return answer

        return counted

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, endpoint in list(hot._ENDPOINTS.items()):
                patch.setitem(hot._ENDPOINTS, key, spy(endpoint))
            async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as client:
                responses = await scenario(client, "alice" if plain else "bobby")
                scrape = await client.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    finally:
        await svc.close()
    counted = [line for line in scrape.text.splitlines() if line.startswith(COUNTED)]
    seen = [(r.status_code, timeless(r.headers.multi_items()), len(r.content), masked(r.content)) for r in responses]
    return [*seen, counted], taken


def masked(content: bytes) -> object:
    try:
        body = json.loads(content)
    except ValueError:
        return content
    if not isinstance(body, dict):
        return body
    return [(k, None if k in VARYING else timeless(v) if k == "error_description" else v) for k, v in body.items()]


def timeless(value: Any) -> Any:
    """A 429's wait in seconds as its shape: it counts down on the wall clock, so the two apps'
    runs, a second apart on a loaded machine, may say 60 and 59 (the header and the description)."""
    if isinstance(value, str):
        return re.sub(r"\bin \d+ s\b", "in N s", value)
    return [(k, re.sub(r"\d", "N", v) if k == "retry-after" else v) for k, v in value]


async def same_answers(
    database_url: str, clock: Clock, passwords: Passwords, scenario: Scenario, **settings: Any
) -> tuple[list[int], int]:
    """Run ``scenario`` on both apps; assert every answer, and what the metrics counted, is the
    same; the statuses, and how many requests ``HotPath`` took."""
    both = make_settings(database_url, rate_limit_global="12/minute", metrics_token=METRICS_TOKEN, **settings)
    plain, taken = await answers(both, clock, passwords, scenario, plain=True)
    documented, none = await answers(both, clock, passwords, scenario, plain=False)
    assert plain[-1] == documented[-1], set(plain[-1]) ^ set(documented[-1])  # the metrics
    assert plain == documented
    assert none == 0
    assert any(int(float(line.rsplit(" ", 1)[1])) for line in plain[-1]), plain[-1]  # the metrics counted them
    return [status for status, *_ in plain[:-1]], taken


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

    statuses, taken = await same_answers(database_url, clock, fast_passwords, scenario)
    assert statuses == [200, 401, 401, 401, 405, 401, 401, 401, 401, 401, 429]
    assert taken == 10  # all but HEAD


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

    statuses, taken = await same_answers(database_url, clock, fast_passwords, scenario)
    assert statuses[:4] == [200, 200, 401, 401]
    assert all(status >= 400 for status in statuses[4:])
    assert statuses[-2:] == [401, 429]  # the 12th request passes the ceiling, the 13th does not
    assert taken == 6  # the first four and the last two


async def test_what_another_layer_acts_on_goes_to_the_app(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """A cookie, an ``Origin`` with CORS on, a header block or a body over its bound, a declared
    length over it: each one answered by the app's own layers, none by ``HotPath``."""
    limit = 2048

    async def scenario(client: httpx.AsyncClient, name: str) -> list[httpx.Response]:
        tokens = await signed_in(client, name)
        ok, refresh = bearer(tokens), {"refresh_token": tokens["refresh_token"]}
        big = {"refresh_token": tokens["refresh_token"], "pad": "x" * limit}
        origin = {"origin": "https://app.example", **ok}
        return [
            await client.get("/v1/auth/me", headers={**ok, "cookie": "a=b"}),
            await client.get("/v1/auth/me", headers=origin),
            await client.post("/v1/auth/refresh", json=refresh, headers={"origin": "https://app.example"}),
            await client.get("/v1/auth/me", headers={**ok, "x-big": "b" * 20_000}),
            await client.post("/v1/auth/refresh", json=big),
            await client.get("/v1/auth/me", headers={**ok, "content-length": "99999999999"}),
        ]

    cors = {"cors_origins": ("https://app.example",), "max_body_bytes": limit}
    statuses, taken = await same_answers(database_url, clock, fast_passwords, scenario, **cors)
    assert statuses == [200, 200, 200, 431, 413, 413]
    assert taken == 0


async def test_a_bug_is_answered_as_on_any_route(
    database_url: str, clock: Clock, fast_passwords: Passwords, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception in a hot endpoint: Starlette's 500 with the app's error body, no
    detail, counted as a 500; the same as from the documented route."""

    async def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    async def scenario(client: httpx.AsyncClient, name: str) -> list[httpx.Response]:
        ok = bearer(await signed_in(client, name))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(SessionUse, "authenticate", broken)
            return [await client.get("/v1/auth/me", headers=ok)]

    statuses, taken = await same_answers(database_url, clock, fast_passwords, scenario)
    assert statuses == [500]
    assert taken == 1
