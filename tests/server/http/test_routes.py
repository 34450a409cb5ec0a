"""Integration tests of the JSON API in-process: the real ASGI app on a real database (SQLite file
and PostgreSQL). Registration, sign-in, the access token at /me, refresh, JWKS, health and the
OpenAPI document; the routes that end sessions are in test_routes_sessions.py.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from keyturn.core.errors import (
    MalformedRefreshToken,
    MalformedToken,
    MissingToken,
    RefreshTokenReused,
    SessionExpired,
    SessionRevoked,
    TokenExpired,
)
from keyturn.core.passwords import Passwords
from keyturn.server.http import create_app
from keyturn.server.service import Service
from tests.conftest import Clock, make_settings
from tests.helpers import (
    PASSWORD,
    SESSION_ENDED,
    assert_refused,
    audit_trail,
    bearer,
    refresh,
    register,
    signed_in,
)

pytestmark = pytest.mark.anyio


async def test_register_returns_the_new_user(client: httpx.AsyncClient) -> None:
    """201 with id, username and created_at; the password is not echoed."""
    response = await client.post("/v1/auth/register", json={"username": "Alice", "password": PASSWORD})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "username", "created_at"}
    assert body["username"] == "Alice"
    uuid.UUID(body["id"])
    assert PASSWORD not in response.text


async def test_register_taken_username_is_409_case_insensitively(client: httpx.AsyncClient) -> None:
    """Usernames are unique after NFKC + case folding."""
    await register(client, "alice")
    response = await client.post("/v1/auth/register", json={"username": "ALICE", "password": PASSWORD})
    assert_refused(response, 409, "username_taken")


async def test_register_closed_when_disabled(database_url: str, clock: Clock, fast_passwords: Passwords) -> None:
    """KEYTURN_ALLOW_REGISTRATION=false answers 403 registration_closed."""
    settings = make_settings(database_url, allow_registration=False)
    svc = Service(settings, passwords=fast_passwords, clock=clock)
    await svc.start()
    try:
        transport = httpx.ASGITransport(app=create_app(settings, service=svc))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            response = await c.post("/v1/auth/register", json={"username": "bob", "password": PASSWORD})
        assert response.status_code == 403
        assert response.json()["error"] == "registration_closed"
    finally:
        await svc.close()


async def test_register_refuses_short_password_without_echoing_it(client: httpx.AsyncClient) -> None:
    """A policy failure is 400 invalid_request with a clear message."""
    response = await client.post("/v1/auth/register", json={"username": "bob", "password": "short"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "at least 8" in response.json()["error_description"]
    assert "short" not in response.json()["error_description"].replace("at least", "")


async def test_login_returns_an_oauth_token_response(client: httpx.AsyncClient) -> None:
    """RFC 6749 §5.1 fields plus refresh_token_expires_in and session_id, never cached."""
    await register(client)
    response = await client.post("/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["refresh_token"].startswith("kt_rt_")
    assert body["refresh_token_expires_in"] == 7 * 86400
    uuid.UUID(body["session_id"])


async def test_login_unknown_user_and_wrong_password_look_the_same(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """Same status and body for an unknown user and a wrong password (no enumeration); each guess
    leaves a failed-login row in the audit log."""
    await register(client)
    wrong = await client.post("/v1/auth/login", json={"username": "alice", "password": "not the password"})
    unknown = await client.post("/v1/auth/login", json={"username": "mallory", "password": "not the password"})
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {
            "error": "invalid_credentials",
            "error_description": "The username or password is incorrect.",
        }
    )
    assert await audit_trail(database_url) == [
        ("register", "ok", None),
        ("login", "failed", None),
        ("login", "failed", None),
    ]


async def test_me_returns_the_caller(client: httpx.AsyncClient) -> None:
    """GET /me reads the access token and the live session."""
    tokens = await signed_in(client)
    response = await client.get("/v1/auth/me", headers=bearer(tokens))
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "alice"
    assert body["session_id"] == tokens["session_id"]
    assert body["client_id"] == "keyturn"
    assert body["scope"] == "profile"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Bearer not-a-token", MalformedToken.description),
        ("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "The token is not an access token (typ must be at+jwt)."),
        ("Bearer " + "a" * 10000, "The access token is missing or too long."),
    ],
    ids=["malformed", "alg-none", "oversized"],
)
async def test_bad_access_token_is_401_with_rfc6750_challenge(
    client: httpx.AsyncClient, header: str, reason: str
) -> None:
    """401 invalid_token with WWW-Authenticate: Bearer error="invalid_token", refused before any
    signature check, with the reason."""
    response = await client.get("/v1/auth/me", headers={"authorization": header})
    assert_refused(response, 401, "invalid_token", reason)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_missing_access_token_is_401_without_error_code(client: httpx.AsyncClient) -> None:
    """RFC 6750 §3.1: no credentials, so the challenge names no error."""
    response = await client.get("/v1/auth/me")
    assert_refused(response, 401, "invalid_token", MissingToken.description)
    assert response.headers["www-authenticate"] == 'Bearer realm="keyturn"'


async def test_expired_access_token_is_refused(client: httpx.AsyncClient, clock: Clock) -> None:
    """Past exp (plus the 5 s leeway) the token is refused."""
    tokens = await signed_in(client)
    clock.advance(15 * 60 + 5)
    response = await client.get("/v1/auth/me", headers=bearer(tokens))
    assert_refused(response, 401, "invalid_token", TokenExpired.description)


async def test_refresh_rotates_and_old_token_replays_inside_grace(client: httpx.AsyncClient, clock: Clock) -> None:
    """The old token, inside the grace window, gets the very same new refresh token back."""
    tokens = await signed_in(client)
    clock.advance(60)
    first = await refresh(client, tokens["refresh_token"])
    assert first.status_code == 200
    assert first.json()["refresh_token"] != tokens["refresh_token"]
    clock.advance(9)
    again = await refresh(client, tokens["refresh_token"])
    assert again.status_code == 200
    assert again.json()["refresh_token"] == first.json()["refresh_token"]


async def test_replay_after_grace_revokes_the_whole_session(
    client: httpx.AsyncClient, clock: Clock, database_url: str
) -> None:
    """Reuse detection (RFC 9700 §4.14): the session, its new refresh and access tokens all die,
    and the audit log says reuse was detected (not a plain refusal)."""
    tokens = await signed_in(client)
    new = (await refresh(client, tokens["refresh_token"])).json()
    clock.advance(11)
    assert_refused(await refresh(client, tokens["refresh_token"]), 401, "invalid_grant", RefreshTokenReused.description)
    assert_refused(await refresh(client, new["refresh_token"]), 401, "invalid_grant", SessionRevoked.description)
    me = await client.get("/v1/auth/me", headers=bearer(new))
    assert_refused(me, 401, "invalid_token", SESSION_ENDED)
    assert 'error="invalid_token"' in me.headers["www-authenticate"]
    trail = await audit_trail(database_url)
    assert ("reuse_detected", "revoked", None) in trail
    assert trail[-1] == ("refresh", "refused", {"reason": "session_revoked"})


async def test_refresh_after_idle_timeout_is_refused(client: httpx.AsyncClient, clock: Clock) -> None:
    """Seven idle days end the session."""
    tokens = await signed_in(client)
    clock.advance(7 * 86400)
    assert_refused(await refresh(client, tokens["refresh_token"]), 401, "invalid_grant", SessionExpired.description)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", MalformedRefreshToken.description),
        ("kt_rt_", MalformedRefreshToken.description),
        ("kt_rt_AAAA", MalformedRefreshToken.description),
        ("xx_rt_" + "A" * 60, MalformedRefreshToken.description),
        ("kt_rt_" + "A" * 60, "The refresh token format is not supported."),
        ("kt_rt_" + "A" * 5000, MalformedRefreshToken.description),
    ],
    ids=["empty", "prefix-only", "truncated", "wrong-prefix", "unknown-version", "oversized"],
)
async def test_malformed_refresh_tokens_are_invalid_grant(
    client: httpx.AsyncClient, token: str, reason: str, database_url: str
) -> None:
    """Forged, truncated, oversized or wrong-prefix refresh tokens: 401 invalid_grant, refused before
    any session is looked up (so no session's audit row)."""
    assert_refused(await refresh(client, token), 401, "invalid_grant", reason)
    assert await audit_trail(database_url) == []


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/v1/auth/login", {"username": "alice", "password": "wrong password!"}, "invalid_credentials"),
        ("/v1/auth/refresh", {"refresh_token": "kt_rt_" + "A" * 60}, "invalid_grant"),
        ("/v1/auth/logout", {"refresh_token": "kt_rt_" + "A" * 60}, "invalid_grant"),
    ],
)
async def test_every_401_names_a_challenge(
    client: httpx.AsyncClient, path: str, body: dict[str, str], error: str
) -> None:
    """Regression (review finding 6): RFC 9110 §15.5.2: refused credentials and refresh tokens are
    401 with a WWW-Authenticate challenge too (without error="invalid_token": the bearer token is
    not what was refused, so no client refreshes and retries)."""
    await register(client)
    response = await client.post(path, json=body)
    assert_refused(response, 401, error)
    assert response.headers["www-authenticate"] == 'Bearer realm="keyturn"'


async def test_jwks_publishes_public_keys_only(client: httpx.AsyncClient) -> None:
    """The JWK Set has the signing key's public members, cacheable for a while."""
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert len(keys) == 1
    assert keys[0]["alg"] == "ES256"
    assert "d" not in keys[0]
    assert "max-age" in response.headers["cache-control"]


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    """healthz answers; readyz checks the database and its migrations."""
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_openapi_lists_bearer_security(database_url: str, clock: Clock, fast_passwords: Passwords) -> None:
    """The OpenAPI document has the routes and the bearer scheme; /docs is served locally (KEYTURN_API_DOCS)."""
    settings = make_settings(database_url, api_docs=True)  # off by default outside development
    svc = Service(settings, passwords=fast_passwords, clock=clock)
    transport = httpx.ASGITransport(app=create_app(settings, service=svc))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        spec = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    await svc.close()
    assert "/v1/auth/refresh" in spec["paths"]
    assert any(s.get("scheme") == "bearer" for s in spec["components"]["securitySchemes"].values())
    assert docs.status_code == 200
    assert "cdn" not in docs.text.lower()
