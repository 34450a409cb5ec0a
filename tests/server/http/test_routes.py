"""Integration tests of the JSON API in-process: the real ASGI app on a real SQLite file."""

from __future__ import annotations

import uuid

import httpx
import pytest

from keyturn.server.service import Service
from tests.conftest import Clock
from tests.helpers import PASSWORD, bearer, login, refresh, register, signed_in

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
    assert response.status_code == 409
    assert response.json()["error"] == "username_taken"


async def test_register_closed_when_disabled(database_url: str, clock: Clock, fast_passwords: object) -> None:
    """KEYTURN_ALLOW_REGISTRATION=false answers 403 registration_closed."""
    from keyturn.server.http import create_app
    from tests.conftest import make_settings

    settings = make_settings(database_url, allow_registration=False)  # type: ignore[arg-type]
    svc = Service(settings, passwords=fast_passwords, clock=clock)  # type: ignore[arg-type]
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


async def test_login_unknown_user_and_wrong_password_look_the_same(client: httpx.AsyncClient) -> None:
    """Same status and body for an unknown user and a wrong password (no enumeration)."""
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
    "header",
    [
        "Bearer not-a-token",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "Bearer " + "a" * 10000,
    ],
)
async def test_bad_access_token_is_401_with_rfc6750_challenge(client: httpx.AsyncClient, header: str) -> None:
    """401 invalid_token with WWW-Authenticate: Bearer error="invalid_token"."""
    response = await client.get("/v1/auth/me", headers={"authorization": header})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_missing_access_token_is_401_without_error_code(client: httpx.AsyncClient) -> None:
    """RFC 6750 §3.1: no credentials, so the challenge names no error."""
    response = await client.get("/v1/auth/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="keyturn"'


async def test_expired_access_token_is_refused(client: httpx.AsyncClient, clock: Clock) -> None:
    """Past exp (plus the 5 s leeway) the token is refused."""
    tokens = await signed_in(client)
    clock.advance(15 * 60 + 5)
    response = await client.get("/v1/auth/me", headers=bearer(tokens))
    assert response.status_code == 401
    assert "expired" in response.json()["error_description"]


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


async def test_replay_after_grace_revokes_the_whole_session(client: httpx.AsyncClient, clock: Clock) -> None:
    """Reuse detection (RFC 9700 §4.14): the session, its new refresh and access tokens all die."""
    tokens = await signed_in(client)
    new = (await refresh(client, tokens["refresh_token"])).json()
    clock.advance(11)
    replay = await refresh(client, tokens["refresh_token"])
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_grant"
    assert "revoked" in replay.json()["error_description"]
    assert (await refresh(client, new["refresh_token"])).status_code == 401
    me = await client.get("/v1/auth/me", headers=bearer(new))
    assert me.status_code == 401
    assert 'error="invalid_token"' in me.headers["www-authenticate"]


async def test_refresh_after_idle_timeout_is_refused(client: httpx.AsyncClient, clock: Clock) -> None:
    """Seven idle days end the session."""
    tokens = await signed_in(client)
    clock.advance(7 * 86400)
    response = await refresh(client, tokens["refresh_token"])
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "token",
    ["", "kt_rt_", "kt_rt_AAAA", "xx_rt_" + "A" * 60, "kt_rt_" + "A" * 60, "kt_rt_" + "A" * 5000],
)
async def test_malformed_refresh_tokens_are_invalid_grant(client: httpx.AsyncClient, token: str) -> None:
    """Forged, truncated, oversized or wrong-prefix refresh tokens: 401 invalid_grant."""
    response = await refresh(client, token)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_grant"


async def test_logout_by_bearer_ends_only_this_session(client: httpx.AsyncClient) -> None:
    """Logout revokes this session at once; another session of the user keeps working."""
    await register(client)
    a, b = await login(client), await login(client)
    response = await client.post("/v1/auth/logout", headers=bearer(a))
    assert response.status_code == 204
    assert (await client.get("/v1/auth/me", headers=bearer(a))).status_code == 401
    assert (await refresh(client, a["refresh_token"])).status_code == 401
    assert (await client.get("/v1/auth/me", headers=bearer(b))).status_code == 200


async def test_logout_by_refresh_token(client: httpx.AsyncClient) -> None:
    """A client that lost its access token can still end the session with the refresh token."""
    tokens = await signed_in(client)
    response = await client.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 204
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401


async def test_logout_without_any_token_is_401(client: httpx.AsyncClient) -> None:
    """Nothing to identify the session: 401."""
    response = await client.post("/v1/auth/logout")
    assert response.status_code == 401


async def test_logout_all_ends_every_session(client: httpx.AsyncClient) -> None:
    """logout-all revokes all of the user's sessions, not other users'."""
    await register(client)
    a, b = await login(client), await login(client)
    other = await signed_in(client, "bob")
    assert (await client.post("/v1/auth/logout-all", headers=bearer(a))).status_code == 204
    for tokens in (a, b):
        assert (await client.get("/v1/auth/me", headers=bearer(tokens))).status_code == 401
        assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    assert (await client.get("/v1/auth/me", headers=bearer(other))).status_code == 200


async def test_sessions_lists_devices_and_marks_current(client: httpx.AsyncClient) -> None:
    """Each session shows user agent, IP, created and last used; the caller's is current."""
    await register(client)
    a = await login(client, device_name="laptop")
    await login(client)
    response = await client.get("/v1/auth/sessions", headers=bearer(a))
    assert response.status_code == 200
    sessions = response.json()["sessions"]
    assert len(sessions) == 2
    current = [s for s in sessions if s["current"]]
    assert [s["id"] for s in current] == [a["session_id"]]
    assert current[0]["user_agent"] == "pytest"
    assert current[0]["ip"] == "203.0.113.7"
    assert current[0]["device_name"] == "laptop"
    assert {"created_at", "last_used_at"} <= set(current[0])


async def test_delete_session_ends_that_device(client: httpx.AsyncClient) -> None:
    """DELETE /sessions/{id} ends one of the user's own sessions."""
    await register(client)
    a, b = await login(client), await login(client)
    response = await client.delete(f"/v1/auth/sessions/{b['session_id']}", headers=bearer(a))
    assert response.status_code == 204
    assert (await refresh(client, b["refresh_token"])).status_code == 401
    assert (await client.get("/v1/auth/me", headers=bearer(a))).status_code == 200


@pytest.mark.parametrize("target", ["other-user", "unknown", "not-a-uuid"])
async def test_delete_session_of_someone_else_is_404(client: httpx.AsyncClient, target: str) -> None:
    """Another user's session, an unknown id or garbage: 404, and nothing is ended."""
    mine = await signed_in(client, "alice")
    theirs = await signed_in(client, "bob")
    sid = {"other-user": theirs["session_id"], "unknown": str(uuid.uuid4()), "not-a-uuid": "x"}[target]
    response = await client.delete(f"/v1/auth/sessions/{sid}", headers=bearer(mine))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert (await client.get("/v1/auth/me", headers=bearer(theirs))).status_code == 200


async def test_password_change_rotates_this_session_and_ends_the_others(client: httpx.AsyncClient) -> None:
    """200 with a fresh pair for this session; every other session ends; the new password works."""
    await register(client)
    a, b = await login(client), await login(client)
    response = await client.post(
        "/v1/auth/password",
        headers=bearer(a),
        json={"current_password": PASSWORD, "new_password": "a whole new passphrase"},
    )
    assert response.status_code == 200
    fresh = response.json()
    assert fresh["session_id"] == a["session_id"]
    assert (await client.get("/v1/auth/me", headers=bearer(fresh))).status_code == 200
    assert (await client.get("/v1/auth/me", headers=bearer(b))).status_code == 401
    assert (await refresh(client, b["refresh_token"])).status_code == 401
    assert (await refresh(client, fresh["refresh_token"])).status_code == 200
    await login(client, password="a whole new passphrase")
    old = await client.post("/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert old.status_code == 401


async def test_logout_with_one_users_access_token_and_another_users_refresh_token_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """Regression (review finding 6): user A's access token and user B's refresh token name two
    sessions: 400 invalid_request, and B's session goes on."""
    alice = await signed_in(client, "alice")
    bob = await signed_in(client, "bob")
    response = await client.post("/v1/auth/logout", json={"refresh_token": bob["refresh_token"]}, headers=bearer(alice))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert "different sessions" in response.json()["error_description"]
    assert (await client.get("/v1/auth/me", headers=bearer(bob))).status_code == 200
    assert (await client.get("/v1/auth/me", headers=bearer(alice))).status_code == 200
    same = await client.post("/v1/auth/logout", json={"refresh_token": alice["refresh_token"]}, headers=bearer(alice))
    assert same.status_code == 204


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/auth/login", {"username": "alice", "password": "wrong password!"}),
        ("/v1/auth/refresh", {"refresh_token": "kt_rt_" + "A" * 60}),
        ("/v1/auth/logout", {"refresh_token": "kt_rt_" + "A" * 60}),
    ],
)
async def test_every_401_names_a_challenge(client: httpx.AsyncClient, path: str, body: dict[str, str]) -> None:
    """Regression (review finding 6): RFC 9110 §15.5.2: refused credentials and refresh tokens are
    401 with a WWW-Authenticate challenge too (without error="invalid_token": the bearer token is
    not what was refused, so no client refreshes and retries)."""
    await register(client)
    response = await client.post(path, json=body)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="keyturn"'


async def test_password_change_with_wrong_current_password(client: httpx.AsyncClient) -> None:
    """The current password is checked; nothing changes when it is wrong."""
    tokens = await signed_in(client)
    response = await client.post(
        "/v1/auth/password",
        headers=bearer(tokens),
        json={"current_password": "wrong password!", "new_password": "a whole new passphrase"},
    )
    assert response.status_code == 401
    assert response.json() == {
        "error": "invalid_credentials",
        "error_description": "The current password is incorrect.",
    }
    # RFC 9110 §15.5.2: a 401 names a challenge; this one says nothing is wrong with the bearer
    # token, so no client refreshes and retries (keyturn.client retries on error="invalid_token").
    assert response.headers["www-authenticate"] == 'Bearer realm="keyturn"'
    await login(client)


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


async def test_openapi_lists_bearer_security(database_url: str, clock: Clock, fast_passwords: object) -> None:
    """The OpenAPI document has the routes and the bearer scheme; /docs is served locally (KEYTURN_API_DOCS)."""
    from keyturn.server.http import create_app
    from tests.conftest import make_settings

    settings = make_settings(database_url, api_docs=True)  # off by default outside development
    svc = Service(settings, passwords=fast_passwords, clock=clock)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=create_app(settings, service=svc))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        spec = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    await svc.close()
    assert "/v1/auth/refresh" in spec["paths"]
    assert any(s.get("scheme") == "bearer" for s in spec["components"]["securitySchemes"].values())
    assert docs.status_code == 200
    assert "cdn" not in docs.text.lower()
