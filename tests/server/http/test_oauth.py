"""Integration tests of the standard OAuth endpoints (keyturn.server.http.oauth) in-process: the
real ASGI app on a real database (SQLite file and PostgreSQL).

``POST /oauth/token`` (RFC 6749, ``grant_type=refresh_token``): the token response, grace replay
and reuse detection as on the JSON API (with the same audit rows), each RFC 6749 §5.2 refusal,
narrowing the scope. ``POST /oauth/revoke`` (RFC 7009): a refresh or an access token ends its
session; anything else is 200 too. Neither reads the browser's refresh cookie. And the RFC 8414
metadata names only endpoints that answer. All of it by the first-party public client; registered
clients (client_credentials, introspection) are tests/server/http/test_oauth_clients.py's.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from keyturn.core.errors import RefreshTokenReused, SessionRevoked
from keyturn.core.refresh import PREFIX
from keyturn.server.service import Service
from tests.conftest import ISSUER, Clock
from tests.helpers import (
    PASSWORD,
    SESSION_ENDED,
    assert_refused,
    audit_trail,
    bearer,
    fetch,
    login,
    refresh,
    register,
    signed_in,
)

pytestmark = pytest.mark.anyio

TOKEN = "/oauth/token"
REVOKE = "/oauth/revoke"
FORM = {"content-type": "application/x-www-form-urlencoded"}
REFRESH_COOKIE = "__Secure-keyturn-refresh"
CSRF_COOKIE = "__Host-keyturn-csrf"
PUBLIC = "The first-party client is public: send no secret."
AUTH_FAILED = "Client authentication failed."
UNKNOWN_CLIENT = "Unknown client."
NO_ASSERTIONS = "Client assertions (private_key_jwt) are not supported."
NEEDS_REFRESH_TOKEN = "The parameter 'refresh_token' is required."
LIVE = "<the session's refresh token>"  # a form value the test replaces


async def grant(client: httpx.AsyncClient, refresh_token: str, **form: str) -> httpx.Response:
    """The refresh-token grant at the token endpoint, as a form."""
    return await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": refresh_token, **form})


async def revoke(client: httpx.AsyncClient, **form: str) -> httpx.Response:
    """A revocation request, as a form (an empty one too: httpx sends no content type for ``data={}``)."""
    return await client.post(REVOKE, content=urlencode(form), headers=FORM)


def claims(access_token: str) -> dict[str, Any]:
    """The payload of an access token, read without verifying it (the server verified it already)."""
    payload = access_token.split(".")[1]
    found: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return found


def forged(refresh_token: str) -> str:
    """The token with one bit of its MAC flipped: well-formed, of this format, not ours."""
    raw = bytearray(base64.urlsafe_b64decode(refresh_token[len(PREFIX) :]))
    raw[-1] ^= 1
    return PREFIX + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


async def generations(database_url: str) -> list[int]:
    return [g for (g,) in await fetch(database_url, "SELECT generation FROM sessions ORDER BY created_at")]


async def ended(client: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    """Assert that the session of ``tokens`` is over, for its refresh token and its access token."""
    assert_refused(await refresh(client, tokens["refresh_token"]), 401, "invalid_grant", SessionRevoked.description)
    assert_refused(await client.get("/v1/auth/me", headers=bearer(tokens)), 401, "invalid_token", SESSION_ENDED)


async def live(client: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    """Assert that the session of ``tokens`` still answers at /me."""
    me = await client.get("/v1/auth/me", headers=bearer(tokens))
    assert me.status_code == 200, me.text
    assert me.json()["session_id"] == tokens["session_id"]


# --- POST /oauth/token ----------------------------------------------------------------------------


async def test_the_token_endpoint_rotates_and_answers_an_rfc6749_token_response(
    client: httpx.AsyncClient, clock: Clock, database_url: str
) -> None:
    """200 with access_token, token_type Bearer, expires_in, a new refresh_token and scope, never
    cached; the new access token works and the session moved one generation."""
    tokens = await signed_in(client)
    clock.advance(60)
    response = await grant(client, tokens["refresh_token"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert {"access_token", "token_type", "expires_in", "refresh_token", "scope"} <= set(body)
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 900, "profile")
    assert body["refresh_token"].startswith(PREFIX)
    assert body["refresh_token"] != tokens["refresh_token"]
    assert body["session_id"] == tokens["session_id"]
    await live(client, body)
    assert await generations(database_url) == [1]


async def test_the_old_refresh_token_inside_the_grace_window_gets_the_same_new_one(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    """A replay of the previous token within reuse_grace (10 s) answers the very same new refresh token."""
    tokens = await signed_in(client)
    first = await grant(client, tokens["refresh_token"])
    assert first.status_code == 200, first.text
    clock.advance(9)
    again = await grant(client, tokens["refresh_token"])
    assert again.status_code == 200, again.text
    assert again.json()["refresh_token"] == first.json()["refresh_token"]


async def test_a_replay_after_the_grace_window_is_400_invalid_grant_and_ends_the_session(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    """Reuse detection as on the JSON API, but answered 400 (RFC 6749 §5.2) without a challenge;
    the new refresh token and the new access token die with the session."""
    tokens = await signed_in(client)
    new = (await grant(client, tokens["refresh_token"])).json()
    clock.advance(11)
    reused = await grant(client, tokens["refresh_token"])
    assert_refused(reused, 400, "invalid_grant", RefreshTokenReused.description)
    assert "www-authenticate" not in reused.headers
    assert reused.headers["cache-control"] == "no-store"
    assert_refused(await grant(client, new["refresh_token"]), 400, "invalid_grant", SessionRevoked.description)
    await ended(client, new)


async def test_the_token_endpoint_leaves_the_same_audit_trail_as_the_json_refresh(
    client: httpx.AsyncClient, clock: Clock, database_url: str
) -> None:
    """Rotation, grace replay and reuse detection write the same audit rows whichever API carried them."""

    async def story(username: str, rotate: Any) -> list[tuple[str, str, dict[str, Any] | None]]:
        user = await register(client, username)
        tokens = await login(client, username)
        new = await rotate(tokens["refresh_token"])
        assert new.status_code == 200, new.text
        clock.advance(5)
        assert (await rotate(tokens["refresh_token"])).status_code == 200
        clock.advance(11)
        assert (await rotate(tokens["refresh_token"])).json()["error"] == "invalid_grant"
        assert (await rotate(new.json()["refresh_token"])).json()["error"] == "invalid_grant"
        return await audit_trail(database_url, user["id"])

    by_json = await story("alice", lambda token: refresh(client, token))
    by_form = await story("bob", lambda token: grant(client, token))
    assert by_form == by_json
    events = [event for event, _, _ in by_form]
    assert events == ["register", "login", "refresh", "refresh_replay", "reuse_detected", "refresh"]


@pytest.mark.parametrize(
    ("request_of", "status", "error", "description"),
    [
        (
            lambda rt: {"json": {"grant_type": "refresh_token", "refresh_token": rt}},
            400, "invalid_request", "The body must be application/x-www-form-urlencoded.",
        ),
        (lambda rt: {"data": {"refresh_token": rt}}, 400, "invalid_request", "The parameter 'grant_type' is required."),
        (
            lambda rt: {"data": {"grant_type": "password", "username": "alice", "password": PASSWORD}},
            400, "unsupported_grant_type",
            "The grant type 'password' is not supported; use one of: refresh_token, client_credentials.",
        ),
        (
            lambda rt: {"data": {"grant_type": "client_credentials"}},
            401, "invalid_client", "client_credentials needs a registered client that authenticates.",
        ),
        (lambda rt: {"data": {"grant_type": "refresh_token"}}, 400, "invalid_request", NEEDS_REFRESH_TOKEN),
        (
            lambda rt: {"data": {"grant_type": "refresh_token", "refresh_token": forged(rt)}},
            400, "invalid_grant", "The refresh token is invalid.",
        ),
        (
            lambda rt: {"content": f"grant_type=refresh_token&refresh_token={rt}&refresh_token={rt}", "headers": FORM},
            400, "invalid_request", "A parameter is named more than once.",
        ),
        (
            lambda rt: {
                "data": {"grant_type": "refresh_token", "refresh_token": rt},
                "headers": {"authorization": "Basic " + base64.b64encode(b"keyturn:secret").decode()},
            },
            401, "invalid_client", PUBLIC,
        ),
        (
            lambda rt: {"data": {"grant_type": "refresh_token", "refresh_token": rt, "client_secret": "secret"}},
            401, "invalid_client", AUTH_FAILED,
        ),
        (
            lambda rt: {
                "data": {"grant_type": "refresh_token", "refresh_token": rt, "client_id": "keyturn",
                         "client_secret": "secret"},
            },
            401, "invalid_client", PUBLIC,
        ),
        (
            lambda rt: {"data": {"grant_type": "refresh_token", "refresh_token": rt, "client_assertion": "eyJ.e.s"}},
            401, "invalid_client", NO_ASSERTIONS,
        ),
        (
            lambda rt: {"data": {"grant_type": "refresh_token", "refresh_token": rt, "client_id": "other"}},
            401, "invalid_client", UNKNOWN_CLIENT,
        ),
    ],
    ids=["json-body", "no-grant-type", "password-grant", "client-credentials-grant", "no-refresh-token",
         "forged-refresh-token", "duplicate-parameter", "basic-auth", "client-secret", "first-party-secret",
         "client-assertion", "other-client-id"],
)  # fmt: skip
async def test_each_refusal_of_the_token_endpoint_is_rfc6749_5_2_and_rotates_nothing(
    client: httpx.AsyncClient,
    clock: Clock,
    database_url: str,
    request_of: Any,
    status: int,
    error: str,
    description: str,
) -> None:
    """The status, error and error_description of each refusal; a 401 challenges with Basic (RFC
    6749 §5.2), a 400 with nothing; never cached; the session did not move and its refresh token
    still rotates (past the grace window, so a hidden rotation would show as reuse)."""
    tokens = await signed_in(client)
    response = await client.post(TOKEN, **request_of(tokens["refresh_token"]))
    assert_refused(response, status, error, description)
    assert response.headers["cache-control"] == "no-store"
    if status == 401:
        assert response.headers["www-authenticate"] == 'Basic realm="keyturn"'
    else:
        assert "www-authenticate" not in response.headers
    assert await generations(database_url) == [0]
    clock.advance(11)
    assert (await grant(client, tokens["refresh_token"])).status_code == 200


@pytest.mark.parametrize("client_id", ["keyturn", ""], ids=["first-party", "blank"])
async def test_the_first_party_client_id_is_accepted(client: httpx.AsyncClient, client_id: str) -> None:
    """client_id=keyturn (settings.client_id) names the public client this server serves; a
    parameter without a value counts as omitted (RFC 6749 §3.2)."""
    tokens = await signed_in(client)
    response = await grant(client, tokens["refresh_token"], client_id=client_id)
    assert response.status_code == 200, response.text
    assert claims(response.json()["access_token"])["client_id"] == "keyturn"


async def test_basic_with_the_first_party_id_and_no_password_is_the_public_client(client: httpx.AsyncClient) -> None:
    """Libraries that always send HTTP Basic name a public client with an empty password: accepted
    as the first-party client, as an empty client_secret would be (RFC 6749 §3.2)."""
    tokens = await signed_in(client)
    headers = {"authorization": "Basic " + base64.b64encode(b"keyturn:").decode()}
    response = await client.post(
        TOKEN, data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert claims(response.json()["access_token"])["client_id"] == "keyturn"


# --- scope ----------------------------------------------------------------------------------------


async def test_a_scope_within_the_grant_is_the_access_tokens_scope(client: httpx.AsyncClient) -> None:
    """scope=profile, all a user is granted, is the access token's scope claim."""
    tokens = await signed_in(client)
    response = await grant(client, tokens["refresh_token"], scope="profile")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "profile"
    assert claims(response.json()["access_token"])["scope"] == "profile"


async def test_a_narrower_scope_narrows_only_that_access_token(client: httpx.AsyncClient, service: Service) -> None:
    """An admin asking for scope=profile gets an access token without admin (refused at the admin
    API); the grant itself is unchanged: the next refresh without scope carries admin again. A
    blank scope counts as omitted (RFC 6749 §3.2), not as an empty scope."""
    await register(client, "root")
    assert await service.admin.grant_role("root", "admin")
    tokens = await login(client, "root")
    assert tokens["scope"] == "profile admin"
    narrow = (await grant(client, tokens["refresh_token"], scope="profile")).json()
    assert (narrow["scope"], claims(narrow["access_token"])["scope"]) == ("profile", "profile")
    refused = await client.get("/v1/admin/audit", headers=bearer(narrow))
    assert_refused(refused, 403, "insufficient_scope", "The access token lacks the scope(s): admin.")
    full = (await grant(client, narrow["refresh_token"])).json()
    assert claims(full["access_token"])["scope"] == "profile admin"
    blank = (await grant(client, full["refresh_token"], scope="")).json()
    assert claims(blank["access_token"])["scope"] == "profile admin"


async def test_a_scope_beyond_the_grant_is_400_invalid_scope_and_rotates_nothing(
    client: httpx.AsyncClient, clock: Clock, database_url: str
) -> None:
    """scope=admin for a user without the admin role: 400 invalid_scope, checked inside the
    rotation's transaction; the session did not move, so past the grace window the same refresh
    token still rotates (a rotation that had been committed would make it a reuse)."""
    tokens = await signed_in(client)
    response = await grant(client, tokens["refresh_token"], scope="profile admin")
    assert_refused(response, 400, "invalid_scope", "Not granted: admin.")  # profile is granted
    assert "www-authenticate" not in response.headers
    assert await generations(database_url) == [0]
    clock.advance(11)
    again = await grant(client, tokens["refresh_token"])
    assert again.status_code == 200, again.text
    assert again.json()["scope"] == "profile"
    assert await generations(database_url) == [1]


# --- the refresh cookie is not read -------------------------------------------------------------


async def cookie_session(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, str]]:
    """Sign in in browser mode; the login's body, and the headers a same-origin browser request
    would carry: its cookies (sent explicitly, whatever their Path), Origin and the CSRF header."""
    await register(client)
    body = {"username": "alice", "password": PASSWORD, "mode": "cookie"}
    response = await client.post("/v1/auth/login", json=body, headers={"origin": ISSUER})
    assert response.status_code == 200, response.text
    refresh_value, csrf = client.cookies[REFRESH_COOKIE], client.cookies[CSRF_COOKIE]
    cookies = f"{REFRESH_COOKIE}={refresh_value}; {CSRF_COOKIE}={csrf}"
    return response.json(), {"cookie": cookies, "origin": ISSUER, "x-csrf-token": csrf}


async def test_the_token_endpoint_does_not_read_the_refresh_cookie(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """With the session cookie, Origin and CSRF header but no refresh_token parameter: 400
    invalid_request, and the session did not move (a cross-site form must not refresh)."""
    _, browser = await cookie_session(client)
    response = await client.post(TOKEN, data={"grant_type": "refresh_token"}, headers=browser)
    assert_refused(response, 400, "invalid_request", NEEDS_REFRESH_TOKEN)
    assert await generations(database_url) == [0]


async def test_the_revocation_endpoint_does_not_read_the_refresh_cookie(client: httpx.AsyncClient) -> None:
    """With the session cookie and a junk token: 200, and the cookie's session is still live (it
    still refreshes through the cookie, and its access token works)."""
    tokens, browser = await cookie_session(client)
    response = await client.post(REVOKE, data={"token": "junk"}, headers=browser)
    assert response.status_code == 200, response.text
    await live(client, tokens)
    headers = {**browser, "content-type": "application/json"}
    assert (await client.post("/v1/auth/refresh", content=b"{}", headers=headers)).status_code == 200


# --- POST /oauth/revoke ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "hint"),
    [
        ("refresh_token", None),
        ("refresh_token", "refresh_token"),
        ("refresh_token", "access_token"),
        ("access_token", "access_token"),
        ("access_token", "refresh_token"),
        ("access_token", None),
    ],
    ids=["refresh", "refresh-hinted", "refresh-wrong-hint", "access-hinted", "access-wrong-hint", "access"],
)
async def test_revoking_a_token_ends_its_session_and_no_other(
    client: httpx.AsyncClient, which: str, hint: str | None
) -> None:
    """RFC 7009 §2.1: the refresh token or the access token of a session ends it, whatever the
    hint says (it only orders the look-ups): 200, an empty body, no-store; the session's tokens are
    refused, it is published on the revocation feed, and the user's other session lives on."""
    await register(client)
    tokens, other = await login(client), await login(client)
    form = {"token": tokens[which]} | ({} if hint is None else {"token_type_hint": hint})
    response = await revoke(client, **form)
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
    await ended(client, tokens)
    await live(client, other)
    feed = (await client.get("/v1/revocations")).json()
    assert [entry["sid"] for entry in feed["entries"]] == [tokens["session_id"]]


@pytest.mark.parametrize(
    "token_of",
    [
        lambda tokens: "garbage",
        lambda tokens: PREFIX + "A" * 60,
        lambda tokens: forged(tokens["refresh_token"]),
        lambda tokens: tokens["access_token"][:-4] + "AAAA",
        lambda tokens: "x" * 5000,
    ],
    ids=["garbage", "unknown-format", "forged-refresh-token", "bad-signature-access-token", "long"],
)
async def test_a_token_that_is_not_ours_is_200_and_ends_nothing(client: httpx.AsyncClient, token_of: Any) -> None:
    """RFC 7009 §2.2: an invalid token is answered 200 like a valid one (no oracle); no session ends."""
    tokens = await signed_in(client)
    for hint in (None, "access_token"):
        form = {"token": token_of(tokens)} | ({} if hint is None else {"token_type_hint": hint})
        response = await revoke(client, **form)
        assert response.status_code == 200, response.text
        assert response.content == b""
    await live(client, tokens)
    assert (await client.get("/v1/revocations")).json()["entries"] == []


async def test_revoking_an_already_revoked_token_is_200_again(client: httpx.AsyncClient) -> None:
    """A second revocation of the same refresh or access token is 200, with nothing left to end."""
    tokens = await signed_in(client)
    for token in (tokens["refresh_token"], tokens["refresh_token"], tokens["access_token"]):
        response = await revoke(client, token=token)
        assert response.status_code == 200, response.text
    await ended(client, tokens)
    assert len((await client.get("/v1/revocations")).json()["entries"]) == 1


@pytest.mark.parametrize(
    ("form", "status", "error", "description"),
    [
        ({}, 400, "invalid_request", "The parameter 'token' is required."),
        ({"token": ""}, 400, "invalid_request", "The parameter 'token' is required."),
        ({"token_type_hint": "refresh_token"}, 400, "invalid_request", "The parameter 'token' is required."),
        ({"token": LIVE, "client_id": "other"}, 401, "invalid_client", UNKNOWN_CLIENT),
        ({"token": LIVE, "client_secret": "secret"}, 401, "invalid_client", AUTH_FAILED),
        ({"token": LIVE, "client_id": "keyturn", "client_secret": "secret"}, 401, "invalid_client", PUBLIC),
        ({"token": LIVE, "client_assertion": "eyJ.e.s"}, 401, "invalid_client", NO_ASSERTIONS),
    ],
    ids=[
        "empty",
        "blank-token",
        "hint-only",
        "other-client-id",
        "client-secret",
        "first-party-secret",
        "client-assertion",
    ],
)
async def test_each_refusal_of_the_revocation_endpoint(
    client: httpx.AsyncClient, form: dict[str, str], status: int, error: str, description: str
) -> None:
    """No token: 400 invalid_request; a client that is neither the public first-party one nor a
    registered one that authenticates: 401 invalid_client with a Basic challenge. Either way the
    session lives on."""
    tokens = await signed_in(client)
    response = await revoke(client, **{k: tokens["refresh_token"] if v is LIVE else v for k, v in form.items()})
    assert_refused(response, status, error, description)
    if status == 401:
        assert response.headers["www-authenticate"] == 'Basic realm="keyturn"'
    await live(client, tokens)


# --- RFC 8414 metadata ----------------------------------------------------------------------------


async def test_every_endpoint_the_metadata_names_answers_its_method(client: httpx.AsyncClient) -> None:
    """Each URL of the metadata answers the method it is meant for (GET the documents; POST an
    empty form to the OAuth endpoints: a refusal of the request, 400 invalid_request, or for
    introspection, which needs a registered client, 401 invalid_client; never 404/405); the grant
    types are refresh_token and client_credentials, the public method is offered where a public
    client may come, and the password grant appears nowhere."""
    response = await client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    metadata = response.json()
    assert metadata["issuer"] == ISSUER
    methods = {"jwks_uri": "GET", "keyturn_revocations_endpoint": "GET", "token_endpoint": "POST",
               "revocation_endpoint": "POST", "introspection_endpoint": "POST"}  # fmt: skip
    named = {key for key in metadata if key.endswith(("_endpoint", "_uri"))}
    assert named == set(methods), "a new endpoint in the metadata needs a line here"
    for key, method in methods.items():
        url = metadata[key]
        assert url.startswith(f"{ISSUER}/"), url
        if method == "GET":
            answer = await client.get(url)
            assert answer.status_code == 200, (key, answer.text)
        elif key == "introspection_endpoint":
            answer = await client.post(url, content=b"", headers=FORM)
            assert_refused(answer, 401, "invalid_client", "Introspection needs a registered client that authenticates.")
        else:
            answer = await client.post(url, content=b"", headers=FORM)
            assert_refused(answer, 400, "invalid_request")
    assert (metadata["token_endpoint"], metadata["revocation_endpoint"]) == (f"{ISSUER}{TOKEN}", f"{ISSUER}{REVOKE}")
    assert metadata["introspection_endpoint"] == f"{ISSUER}/oauth/introspect"
    assert metadata["grant_types_supported"] == ["refresh_token", "client_credentials"]
    secret_methods = ["client_secret_basic", "client_secret_post"]
    assert metadata["token_endpoint_auth_methods_supported"] == ["none", *secret_methods]
    assert metadata["revocation_endpoint_auth_methods_supported"] == ["none", *secret_methods]
    assert metadata["introspection_endpoint_auth_methods_supported"] == secret_methods
    assert metadata["scopes_supported"] == ["admin", "profile"]
    assert "password" not in response.text.lower()
