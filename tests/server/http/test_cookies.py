"""Integration tests of browser mode in-process: refresh cookie, CSRF checks, CORS, the page route.

The app runs for real on a SQLite file; httpx keeps the cookies like a browser would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from keyturn.core.errors import CsrfTokenInvalid, SessionRevoked
from keyturn.core.passwords import Passwords
from tests.conftest import ISSUER, Clock, app_client
from tests.helpers import PASSWORD, assert_refused, bearer, fetch, register

pytestmark = pytest.mark.anyio

REFRESH = "__Secure-keyturn-refresh"
CSRF = "__Host-keyturn-csrf"
SAME_ORIGIN = {"origin": ISSUER}
NO_ORIGIN = "The request has no Origin header, so it cannot use the session cookie."


async def cookie_login(client: httpx.AsyncClient, username: str = "alice") -> httpx.Response:
    await register(client, username)
    body = {"username": username, "password": PASSWORD, "mode": "cookie"}
    response = await client.post("/v1/auth/login", json=body, headers=SAME_ORIGIN)
    assert response.status_code == 200, response.text
    return response


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def csrf_headers(client: httpx.AsyncClient, **extra: str) -> dict[str, str]:
    return {**SAME_ORIGIN, "content-type": "application/json", "x-csrf-token": client.cookies[CSRF], **extra}


async def cookie_refresh(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={}, headers=csrf_headers(client, **headers))


async def generation(database_url: str) -> list[int]:
    return [g for (g,) in await fetch(database_url, "SELECT generation FROM sessions ORDER BY created_at")]


async def test_cookie_login_sets_hardened_cookies_and_no_body_token(client: httpx.AsyncClient) -> None:
    """HttpOnly, Secure, SameSite=Strict, __Secure- prefix, auth path only, Max-Age of the session."""
    response = await cookie_login(client)
    body = response.json()
    assert "refresh_token" not in body
    assert body["access_token"].count(".") == 2
    cookies = set_cookies(response)
    refresh = cookies[REFRESH].lower()
    for attribute in ("httponly", "secure", "samesite=strict", "path=/v1/auth", f"max-age={7 * 86400}"):
        assert attribute in refresh
    assert "kt_rt_" in cookies[REFRESH]
    csrf = cookies[CSRF].lower()
    assert "secure" in csrf
    assert "path=/" in csrf
    assert "httponly" not in csrf
    assert "domain" not in csrf


async def test_cookie_refresh_rotates_the_cookie(client: httpx.AsyncClient, database_url: str) -> None:
    """A refresh with cookie + CSRF header + own Origin rotates; the new token is only in the cookie."""
    await cookie_login(client)
    old = client.cookies[REFRESH]
    response = await cookie_refresh(client)
    assert response.status_code == 200
    assert "refresh_token" not in response.json()
    assert client.cookies[REFRESH] != old
    assert await generation(database_url) == [1]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"origin": "https://evil.example"}, "origin_not_allowed"),
        ({"origin": "null"}, "origin_not_allowed"),
        ({"origin": "https://auth.keyturn.test.evil.example"}, "origin_not_allowed"),
        ({"x-csrf-token": ""}, "csrf_token_invalid"),
        ({"x-csrf-token": "AAAAAAAAAAAAAAAAAAAAAA"}, "csrf_token_invalid"),
        ({"content-type": "text/plain"}, "content_type_not_allowed"),
        ({"content-type": "application/x-www-form-urlencoded"}, "content_type_not_allowed"),
    ],
)
async def test_cookie_refresh_refused_by_each_check(
    client: httpx.AsyncClient, database_url: str, headers: dict[str, str], code: str
) -> None:
    """Each failed check answers 403 with its own code, and the session does not move."""
    await cookie_login(client)
    all_headers = csrf_headers(client, **headers)
    response = await client.post("/v1/auth/refresh", content=b"{}", headers=all_headers)
    assert response.status_code == 403
    assert response.json()["error"] == code
    assert await generation(database_url) == [0]


async def test_missing_origin_needs_fetch_metadata(client: httpx.AsyncClient) -> None:
    """Without Origin, Sec-Fetch-Site: same-origin is accepted and anything else refused."""
    await cookie_login(client)
    base = {"x-csrf-token": client.cookies[CSRF]}
    refused = await client.post("/v1/auth/refresh", json={}, headers=base)
    assert_refused(refused, 403, "origin_not_allowed", NO_ORIGIN)
    cross = await client.post("/v1/auth/refresh", json={}, headers={**base, "sec-fetch-site": "same-site"})
    assert_refused(cross, 403, "origin_not_allowed", NO_ORIGIN)
    ok = await client.post("/v1/auth/refresh", json={}, headers={**base, "sec-fetch-site": "same-origin"})
    assert ok.status_code == 200


async def test_csrf_token_of_another_session_is_refused(client: httpx.AsyncClient) -> None:
    """The token is bound to the session: the attacker's own valid token does not work for the victim."""
    await cookie_login(client, "attacker")
    attacker_token = client.cookies[CSRF]
    client.cookies.clear()
    await cookie_login(client, "victim")
    response = await cookie_refresh(client, **{"x-csrf-token": attacker_token})
    assert_refused(response, 403, "csrf_token_invalid", CsrfTokenInvalid.description)


async def test_cookie_login_from_another_origin_is_refused(client: httpx.AsyncClient) -> None:
    """Login CSRF: another site cannot sign the browser into an account."""
    await register(client)
    body = {"username": "alice", "password": PASSWORD, "mode": "cookie"}
    response = await client.post("/v1/auth/login", json=body, headers={"origin": "https://evil.example"})
    assert_refused(response, 403, "origin_not_allowed")
    assert "set-cookie" not in response.headers


async def test_the_requests_own_host_is_not_an_allowed_origin(client: httpx.AsyncClient) -> None:
    """Regression (review finding 6): Origin equal to the request's Host header is refused when it
    is not the issuer's origin or a listed one: Host is the client's to write."""
    await cookie_login(client)
    forged = {"host": "evil.example", "origin": "https://evil.example"}
    response = await client.post("/v1/auth/refresh", json={}, headers=csrf_headers(client, **forged))
    assert (response.status_code, response.json()["error"]) == (403, "origin_not_allowed")
    body = {"username": "alice", "password": PASSWORD, "mode": "cookie"}
    login = await client.post("/v1/auth/login", json=body, headers=forged)
    assert (login.status_code, login.json()["error"]) == (403, "origin_not_allowed")


@pytest.mark.parametrize(("env", "allowed"), [("development", True), ("production", False)])
async def test_other_loopback_names_of_a_loopback_issuer_are_allowed_in_development_only(
    database_url: str, clock: Clock, fast_passwords: Passwords, env: str, allowed: bool
) -> None:
    """The dev page opened at http://localhost:8000 signs in although the issuer says 127.0.0.1
    (the alias comes from the settings, not from Host); in production only the issuer's origin."""
    overrides = {"env": env, "issuer": "http://127.0.0.1:8000", "web_page": True}
    async with app_client(database_url, clock, fast_passwords, **overrides) as client:
        await register(client)
        body = {"username": "alice", "password": PASSWORD, "mode": "cookie"}
        response = await client.post("/v1/auth/login", json=body, headers={"origin": "http://localhost:8000"})
        assert response.status_code == (200 if allowed else 403), response.text
        other_port = await client.post("/v1/auth/login", json=body, headers={"origin": "http://localhost:8001"})
        assert (other_port.status_code, other_port.json()["error"]) == (403, "origin_not_allowed")


async def test_logout_with_a_bearer_token_and_another_sessions_cookie_is_refused(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """Regression (review finding 6): the cookie and the access token of a logout must name the same
    session; a mismatch ends neither."""
    mine = (await cookie_login(client)).json()
    other = await client.post("/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    response = await client.post("/v1/auth/logout", json={}, headers={**bearer(other.json()), **csrf_headers(client)})
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert await fetch(database_url, "SELECT count(*) FROM sessions WHERE revoked_at IS NULL") == [(2,)]
    assert (await client.get("/v1/auth/me", headers=bearer(mine))).status_code == 200


async def test_logout_by_cookie_clears_both_cookies(client: httpx.AsyncClient, database_url: str) -> None:
    """Logout with only the cookie ends the session and expires the cookies."""
    await cookie_login(client)
    response = await client.post("/v1/auth/logout", json={}, headers=csrf_headers(client))
    assert response.status_code == 204
    cleared = set_cookies(response)
    assert "max-age=0" in cleared[REFRESH].lower()
    assert "max-age=0" in cleared[CSRF].lower()
    assert REFRESH not in client.cookies
    assert await fetch(database_url, "SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL") == [(1,)]


async def test_logout_all_with_cookie_needs_csrf_and_clears(client: httpx.AsyncClient) -> None:
    """A bearer request that carries the cookie still passes the CSRF checks, then clears it."""
    tokens = (await cookie_login(client)).json()
    refused = await client.post("/v1/auth/logout-all", json={}, headers={**bearer(tokens), **SAME_ORIGIN})
    assert_refused(refused, 403, "csrf_token_invalid")
    ok = await client.post("/v1/auth/logout-all", json={}, headers={**bearer(tokens), **csrf_headers(client)})
    assert ok.status_code == 204
    assert REFRESH not in client.cookies


async def test_revoked_session_refresh_clears_the_cookie(client: httpx.AsyncClient) -> None:
    """When the session has ended, the refusal also tells the browser to forget the cookie."""
    tokens = (await cookie_login(client)).json()
    csrf = client.cookies[CSRF]
    stale = client.cookies[REFRESH]
    await client.post("/v1/auth/logout-all", json={}, headers={**bearer(tokens), **csrf_headers(client)})
    client.cookies.set(REFRESH, stale, domain="auth.keyturn.test", path="/v1/auth")
    client.cookies.set(CSRF, csrf, domain="auth.keyturn.test", path="/")
    response = await cookie_refresh(client)
    assert_refused(response, 401, "invalid_grant", SessionRevoked.description)
    assert "max-age=0" in set_cookies(response)[REFRESH].lower()


async def test_password_change_in_cookie_mode_renews_the_cookie(client: httpx.AsyncClient) -> None:
    """The rotated refresh token of a password change goes into the cookie, not the body."""
    tokens = (await cookie_login(client)).json()
    old = client.cookies[REFRESH]
    body = {"current_password": PASSWORD, "new_password": "an entirely new passphrase"}
    response = await client.post("/v1/auth/password", json=body, headers={**bearer(tokens), **csrf_headers(client)})
    assert response.status_code == 200
    assert "refresh_token" not in response.json()
    assert client.cookies[REFRESH] != old
    assert (await cookie_refresh(client)).status_code == 200


async def test_refresh_without_any_token_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/refresh", json={})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.fixture
async def always_cookie(database_url: str, clock: Clock, fast_passwords: Passwords) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(database_url, clock, fast_passwords, cookie_mode="always") as c:
        yield c


@pytest.fixture
async def cors_client(database_url: str, clock: Clock, fast_passwords: Passwords) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(database_url, clock, fast_passwords, cors_origins="https://app.example", web_page=True) as c:
        yield c


async def test_cookie_mode_always_refuses_body_tokens(always_cookie: httpx.AsyncClient) -> None:
    """KEYTURN_COOKIE_MODE=always: logins get cookies; refresh tokens in bodies are refused."""
    await register(always_cookie)
    login = await always_cookie.post(
        "/v1/auth/login", json={"username": "alice", "password": PASSWORD}, headers=SAME_ORIGIN
    )
    assert REFRESH in always_cookie.cookies
    assert "refresh_token" not in login.json()
    token = always_cookie.cookies[REFRESH]
    always_cookie.cookies.clear()
    body = await always_cookie.post("/v1/auth/refresh", json={"refresh_token": token})
    assert_refused(body, 400, "invalid_request", "This server takes refresh tokens only from its cookie.")
    as_body = await always_cookie.post(
        "/v1/auth/login", json={"username": "alice", "password": PASSWORD, "mode": "body"}, headers=SAME_ORIGIN
    )
    assert_refused(as_body, 400, "invalid_request", "This server does not deliver refresh tokens in body mode.")


async def test_cors_denied_by_default(client: httpx.AsyncClient) -> None:
    """With no KEYTURN_CORS_ORIGINS, no origin gets CORS headers."""
    response = await client.get("/healthz", headers={"origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_cors_echoes_only_listed_origins(cors_client: httpx.AsyncClient) -> None:
    """A listed origin is echoed with credentials; another origin is never reflected."""
    listed = await cors_client.get("/healthz", headers={"origin": "https://app.example"})
    assert listed.headers["access-control-allow-origin"] == "https://app.example"
    assert listed.headers["access-control-allow-credentials"] == "true"
    other = await cors_client.get("/healthz", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    preflight = {"origin": "https://evil.example", "access-control-request-method": "POST"}
    refused = await cors_client.options("/v1/auth/refresh", headers=preflight)
    assert refused.headers.get("access-control-allow-origin") != "https://evil.example"
    allowed = await cors_client.options(
        "/v1/auth/refresh",
        headers={**preflight, "origin": "https://app.example", "access-control-request-headers": "x-csrf-token"},
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"


async def test_listed_origin_may_use_the_cookie(cors_client: httpx.AsyncClient) -> None:
    """A CORS-listed SPA origin passes the Origin check."""
    await register(cors_client)
    body = {"username": "alice", "password": PASSWORD, "mode": "cookie"}
    response = await cors_client.post("/v1/auth/login", json=body, headers={"origin": "https://app.example"})
    assert response.status_code == 200


async def test_web_page_has_a_strict_csp(cors_client: httpx.AsyncClient) -> None:
    """The page and its assets are served with a CSP that allows no inline script."""
    page = await cors_client.get("/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    asset = await cors_client.get("/static/app.js")
    assert asset.status_code == 200
    assert asset.headers["content-security-policy"] == csp


async def test_web_page_off_in_production_by_default(client: httpx.AsyncClient) -> None:
    """KEYTURN_WEB_PAGE defaults to off outside development."""
    assert_refused(await client.get("/"), 404, "not_found")
