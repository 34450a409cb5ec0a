"""Integration tests of the OAuth endpoints for registered (confidential) clients, in-process: the
real ASGI app on a real database (SQLite file and PostgreSQL).

``client_credentials`` at ``POST /oauth/token`` by HTTP Basic and by ``client_secret_post``, each
only as registered; RFC 7662 ``POST /oauth/introspect`` (registered clients only); RFC 7009
revocation by a registered client; a registered client refused a first-party session's refresh
token; the per-client rate limit; refused refresh grants in ``keyturn_refreshes_total``; and the
RFC 8414 metadata with registered clients, and path-aware for an issuer with a path.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote_plus, urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from keyturn.core.passwords import Passwords
from keyturn.server.http import create_app
from keyturn.server.service import Registered, Service
from tests.conftest import ISSUER, Clock, make_settings
from tests.helpers import assert_refused, bearer, fetch, signed_in

pytestmark = pytest.mark.anyio

TOKEN = "/oauth/token"
REVOKE = "/oauth/revoke"
INTROSPECT = "/oauth/introspect"
METADATA = "/.well-known/oauth-authorization-server"
SCOPE = "invoices:read invoices:write"
CHALLENGE = 'Basic realm="keyturn"'
METRICS_TOKEN = "metrics-scrape-token-0123456789abcdef"
NEEDS_A_CLIENT = "Introspection needs a registered client that authenticates."
FORM = {"content-type": "application/x-www-form-urlencoded"}


def basic(made: Registered, secret: str | None = None) -> dict[str, str]:
    """HTTP Basic for a client, its id and secret form-encoded first (RFC 6749 §2.3.1)."""
    raw = f"{quote_plus(made.client.client_id)}:{quote_plus(made.secret if secret is None else secret)}"
    return {"authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


def posted(made: Registered) -> dict[str, str]:
    """client_secret_post: the id and secret as form fields."""
    return {"client_id": made.client.client_id, "client_secret": made.secret}


def claims(access_token: str) -> dict[str, Any]:
    payload = access_token.split(".")[1]
    found: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return found


async def machine(client: httpx.AsyncClient, made: Registered, **form: str) -> httpx.Response:
    """client_credentials by HTTP Basic."""
    return await client.post(TOKEN, data={"grant_type": "client_credentials", **form}, headers=basic(made))


async def introspect(client: httpx.AsyncClient, by: Registered, token: str) -> dict[str, Any]:
    response = await client.post(INTROSPECT, data={"token": token}, headers=basic(by))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    answer: dict[str, Any] = response.json()
    return answer


def assert_client_refused(response: httpx.Response, description: str) -> None:
    """RFC 6749 §5.2: 401 invalid_client with a Basic challenge, never cached."""
    assert_refused(response, 401, "invalid_client", description)
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.headers["cache-control"] == "no-store"


@pytest.fixture
async def billing(service: Service) -> Registered:
    """A machine client that authenticates by HTTP Basic."""
    return await service.clients.add("billing", scope=SCOPE)


@pytest.fixture
async def gateway(service: Service) -> Registered:
    """A resource server that introspects (no grant), by HTTP Basic."""
    return await service.clients.add("gateway", grant_types=())


@asynccontextmanager
async def serving(
    database_url: str, clock: Clock, passwords: Passwords, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Service]]:
    """The app on settings of its own (``overrides``), requested at the issuer's host."""
    settings = make_settings(database_url, **overrides)
    svc = Service(settings, passwords=passwords, clock=clock)
    await svc.start()
    try:
        transport = httpx.ASGITransport(app=create_app(settings, service=svc), client=("203.0.113.7", 51234))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as c:
            yield c, svc
    finally:
        await svc.close()


# --- client_credentials --------------------------------------------------------------------------


async def test_client_credentials_by_basic_is_a_token_response_without_refresh_token(
    client: httpx.AsyncClient, billing: Registered, gateway: Registered
) -> None:
    """RFC 6749 §4.4.3: 200, access_token, Bearer, expires_in, scope, no refresh token, never
    cached; the token is the client's and introspects active."""
    response = await machine(client, billing)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 900, SCOPE)
    assert (claims(body["access_token"])["sub"], claims(body["access_token"])["client_id"]) == ("billing", "billing")
    assert (await introspect(client, gateway, body["access_token"]))["active"] is True


async def test_a_basic_client_sending_its_secret_in_the_body_is_refused(
    client: httpx.AsyncClient, billing: Registered
) -> None:
    """A client uses the method it was registered with: client_secret_post from a Basic client is
    401 naming the right one."""
    response = await client.post(TOKEN, data={"grant_type": "client_credentials", **posted(billing)})
    assert_client_refused(response, "Authenticate with client_secret_basic, as registered.")


async def test_client_credentials_by_post_for_a_client_registered_so(
    client: httpx.AsyncClient, service: Service
) -> None:
    """A client_secret_post client gets its token with the secret in the body; by Basic: 401."""
    made = await service.clients.add("poster", scope="reports:read", auth_method="client_secret_post")
    response = await client.post(TOKEN, data={"grant_type": "client_credentials", **posted(made)})
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "reports:read"
    assert_client_refused(await machine(client, made), "Authenticate with client_secret_post, as registered.")


async def test_client_credentials_narrowing_and_its_refusals(
    client: httpx.AsyncClient, billing: Registered, gateway: Registered
) -> None:
    """A scope within the client's narrows the token; beyond it is 400 invalid_scope; a wrong
    secret is 401; a client registered without the grant is 400 unauthorized_client."""
    narrow = await machine(client, billing, scope="invoices:read")
    assert narrow.status_code == 200, narrow.text
    assert narrow.json()["scope"] == claims(narrow.json()["access_token"])["scope"] == "invoices:read"
    beyond = await machine(client, billing, scope="invoices:read admin")
    assert_refused(beyond, 400, "invalid_scope", "Not granted: admin.")
    assert "www-authenticate" not in beyond.headers
    wrong = await client.post(TOKEN, data={"grant_type": "client_credentials"}, headers=basic(billing, "kt_cs_x"))
    assert_client_refused(wrong, "Client authentication failed.")
    no_grant = await machine(client, gateway)
    assert_refused(no_grant, 400, "unauthorized_client", "This client may not use the client_credentials grant.")


async def test_a_machine_token_is_not_a_users_token(client: httpx.AsyncClient, billing: Registered) -> None:
    """The first-party API answers only users' sessions: a machine's token is refused at /v1/auth/me."""
    token = (await machine(client, billing)).json()
    assert_refused(await client.get("/v1/auth/me", headers=bearer(token)), 401, "invalid_token")


# --- introspection -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("credentials", "description"),
    [
        ({}, NEEDS_A_CLIENT),
        ({"data": {"client_id": "keyturn"}}, NEEDS_A_CLIENT),
        ({"data": {"client_id": "nobody"}}, "Unknown client."),
        ({"data": {"client_id": "gateway"}}, "This client must authenticate."),
        ({"headers": {"authorization": "Bearer LIVE"}}, "Authenticate the client with HTTP Basic or in the body."),
        ({"headers": {"authorization": "Basic Z2F0ZXdheTp3cm9uZw=="}}, "Client authentication failed."),
        ({"data": {"client_id": "gate\x00way"}}, "Unknown client."),
        (
            {"headers": {"authorization": "Basic " + base64.b64encode(b"gate%00way:x").decode()}},
            "Client authentication failed.",
        ),
    ],
    ids=["none", "first-party", "unknown", "no-secret", "bearer", "wrong-secret", "nul-in-id", "nul-in-basic-id"],
)
async def test_introspection_without_a_registered_client_is_401(
    client: httpx.AsyncClient, gateway: Registered, credentials: dict[str, Any], description: str
) -> None:
    """RFC 7662 §2.1: the endpoint answers only an authenticated registered client; anyone else,
    a public client or one bearing the very token it asks about included, is 401 invalid_client."""
    tokens = await signed_in(client)
    data = {"token": tokens["access_token"], **credentials.get("data", {})}
    headers = {k: v.replace("LIVE", tokens["access_token"]) for k, v in credentials.get("headers", {}).items()}
    assert_client_refused(await client.post(INTROSPECT, data=data, headers=headers), description)


async def test_introspection_answers_each_kind_of_token(
    client: httpx.AsyncClient, billing: Registered, gateway: Registered
) -> None:
    """A user's access and refresh tokens (with the username), a machine's token (without), and
    anything else ({"active": false}); a missing token is 400 invalid_request."""
    tokens = await signed_in(client)
    user = await introspect(client, gateway, tokens["access_token"])
    assert (user["active"], user["username"], user["client_id"], user["sid"]) == (
        True, "alice", "keyturn", tokens["session_id"],
    )  # fmt: skip
    refresh = await introspect(client, gateway, tokens["refresh_token"])
    assert (refresh["active"], refresh["username"], refresh["sid"]) == (True, "alice", tokens["session_id"])
    issued = (await machine(client, billing)).json()
    answer = await introspect(client, billing, issued["access_token"])  # a machine may introspect its own
    assert (answer["active"], answer["sub"], answer["scope"]) == (True, "billing", SCOPE)
    assert "username" not in answer
    for junk in ("garbage", "a.b.c", tokens["access_token"][:-4] + "AAAA"):
        assert await introspect(client, gateway, junk) == {"active": False}
    missing = await client.post(INTROSPECT, content=b"", headers={**FORM, **basic(gateway)})
    assert_refused(missing, 400, "invalid_request", "The parameter 'token' is required.")


async def test_a_logout_or_a_disable_makes_a_token_inactive_at_once(
    client: httpx.AsyncClient, service: Service, billing: Registered, gateway: Registered
) -> None:
    """Introspection reads the session and the client now: after a logout, a user's token is
    inactive; after the operator disables the client, its token is."""
    tokens = await signed_in(client)
    issued = (await machine(client, billing)).json()
    assert (await client.post("/v1/auth/logout", headers=bearer(tokens))).status_code == 204
    await service.clients.disable("billing")
    for token in (tokens["access_token"], tokens["refresh_token"], issued["access_token"]):
        assert await introspect(client, gateway, token) == {"active": False}


async def test_a_deeply_nested_token_is_inactive_and_revokes_nothing(
    client: httpx.AsyncClient, gateway: Registered
) -> None:
    """A token-sized JWS whose payload nests 5,000 arrays (past the JSON decoder's recursion limit)
    is {"active": false} at introspection and a 200 at revocation, not a 500."""
    nested = "e30." + base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=") + ".e30"
    assert await introspect(client, gateway, nested) == {"active": False}
    for headers in ({}, basic(gateway)):
        response = await client.post(REVOKE, data={"token": nested}, headers=headers)
        assert response.status_code == 200, response.text


# --- revocation by a registered client -----------------------------------------------------------


async def test_a_machine_revoking_its_own_token_ends_it(
    client: httpx.AsyncClient, billing: Registered, gateway: Registered
) -> None:
    """200 with an empty body; the token is inactive and on the feed (client_revoked); the next
    token works."""
    issued = (await machine(client, billing)).json()
    response = await client.post(REVOKE, data={"token": issued["access_token"]}, headers=basic(billing))
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert await introspect(client, gateway, issued["access_token"]) == {"active": False}
    entries = (await client.get("/v1/revocations")).json()["entries"]
    assert [(e["sid"], e["reason"]) for e in entries] == [(claims(issued["access_token"])["sid"], "client_revoked")]
    again = (await machine(client, billing)).json()
    assert (await introspect(client, gateway, again["access_token"]))["active"] is True


async def test_a_registered_client_revoking_another_clients_token_is_400_other_client(
    client: httpx.AsyncClient, billing: Registered, gateway: Registered
) -> None:
    """RFC 7009 §2.1: another machine's token, or a user's access or refresh token: 400
    invalid_grant, and each stays active."""
    tokens = await signed_in(client)
    issued = (await machine(client, billing)).json()
    for token in (issued["access_token"], tokens["access_token"], tokens["refresh_token"]):
        response = await client.post(REVOKE, data={"token": token}, headers=basic(gateway))
        assert_refused(response, 400, "invalid_grant", "The token was issued to another client.")
        assert "www-authenticate" not in response.headers
        assert (await introspect(client, gateway, token))["active"] is True


# --- refresh_token by the wrong client -----------------------------------------------------------


async def test_a_registered_client_cannot_refresh_a_first_party_session(
    client: httpx.AsyncClient, clock: Clock, database_url: str, billing: Registered
) -> None:
    """RFC 6749 §6: 400 invalid_grant; the session did not move, and past the grace window its
    own client still refreshes it (a hidden rotation would show as reuse)."""
    tokens = await signed_in(client)
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    response = await client.post(TOKEN, data=form, headers=basic(billing))
    assert_refused(response, 400, "invalid_grant", "The refresh token was issued to another client.")
    assert [g for (g,) in await fetch(database_url, "SELECT generation FROM sessions")] == [0]
    clock.advance(11)
    assert (await client.post(TOKEN, data=form)).status_code == 200


# --- rate limit and metrics ----------------------------------------------------------------------


async def test_client_credentials_is_rate_limited_per_client(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """KEYTURN_RATE_LIMIT_CLIENT_GRANT: past it, 429 rate_limited with Retry-After for that client;
    another client is not held back."""
    async with serving(database_url, clock, fast_passwords, rate_limit_client_grant="2/minute") as (client, svc):
        made, other = await svc.clients.add("billing"), await svc.clients.add("reports")
        for _ in range(2):
            assert (await machine(client, made)).status_code == 200
        limited = await machine(client, made)
        assert_refused(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        assert (await machine(client, other)).status_code == 200


def refreshes(scraped: httpx.Response) -> dict[str, float]:
    """keyturn_refreshes_total by outcome, the ones above 0, as a scraper reads them."""
    assert scraped.status_code == 200, scraped.text
    return {
        s.labels["outcome"]: s.value
        for family in text_string_to_metric_families(scraped.text)
        for s in family.samples
        if s.name == "keyturn_refreshes_total" and s.value
    }


async def test_refused_refresh_grants_are_counted(database_url: str, clock: Clock, fast_passwords: Passwords) -> None:
    """A forged refresh token and a refresh by the wrong client count as invalid, a reuse as
    reuse_detected, in keyturn_refreshes_total, like the JSON API's; client_credentials, granted
    or refused, counts in no refresh outcome."""
    async with serving(database_url, clock, fast_passwords, metrics_token=METRICS_TOKEN) as (client, svc):
        made = await svc.clients.add("billing")
        tokens = await signed_in(client)
        first = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        assert (await client.post(TOKEN, data=first, headers=basic(made))).status_code == 400
        forged = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"][:-2] + "AA"}
        assert (await client.post(TOKEN, data=forged)).status_code == 400
        assert (await client.post(TOKEN, data=first)).status_code == 200
        clock.advance(11)
        assert (await client.post(TOKEN, data=first)).json()["error"] == "invalid_grant"
        assert (await machine(client, made)).status_code == 200
        assert (await machine(client, made, scope="admin")).status_code == 400
        counted = refreshes(await client.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}))
    assert (counted["invalid"], counted["reuse_detected"]) == (2, 1)
    assert set(counted) == {"invalid", "reuse_detected", "rotated"}


async def test_a_refused_refresh_grant_is_not_counted_as_rotated(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """Only the rotation that happened is counted: a refresh refused other_client or invalid_scope
    rotated nothing (its transaction rolled back after the one-statement rotation), so rotated
    stays at the one real rotation (audit observers run after the commit)."""
    async with serving(database_url, clock, fast_passwords, metrics_token=METRICS_TOKEN) as (client, svc):
        made = await svc.clients.add("billing")
        tokens = await signed_in(client)
        first = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        assert (await client.post(TOKEN, data=first, headers=basic(made))).status_code == 400
        assert (await client.post(TOKEN, data={**first, "scope": "admin"})).status_code == 400
        assert (await client.post(TOKEN, data=first)).status_code == 200
        counted = refreshes(await client.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}))
    assert counted == {"invalid": 1, "rotated": 1}


# --- RFC 8414 metadata ---------------------------------------------------------------------------


async def test_every_oauth_endpoint_of_the_metadata_serves_a_registered_client(
    client: httpx.AsyncClient, billing: Registered
) -> None:
    """With a client registered: its scopes are in scopes_supported, and the token, introspection
    and revocation endpoints named answer it 200 (POST)."""
    metadata = (await client.get(METADATA)).json()
    assert set(SCOPE.split()) <= set(metadata["scopes_supported"])
    assert metadata["scopes_supported"] == sorted(metadata["scopes_supported"])
    token = await client.post(metadata["token_endpoint"], data={"grant_type": "client_credentials"},
                              headers=basic(billing))  # fmt: skip
    assert token.status_code == 200, token.text
    access = token.json()["access_token"]
    for key in ("introspection_endpoint", "revocation_endpoint"):
        answer = await client.post(metadata[key], data={"token": access}, headers=basic(billing))
        assert answer.status_code == 200, (key, answer.text)


async def test_an_issuer_with_a_path_has_path_aware_metadata(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """RFC 8414 §3.1: for https://auth.keyturn.test/tenant the document is served at
    /.well-known/oauth-authorization-server/tenant (and at the root location), names that issuer,
    and every endpoint under /tenant; each answers once a proxy strips /tenant."""
    issuer = f"{ISSUER}/tenant"
    async with serving(database_url, clock, fast_passwords, issuer=issuer) as (client, svc):
        made = await svc.clients.add("billing")
        response = await client.get(f"{METADATA}/tenant")
        assert response.status_code == 200, response.text
        metadata = response.json()
        assert (await client.get(METADATA)).json() == metadata
        assert metadata["issuer"] == issuer
        urls = {k: v for k, v in metadata.items() if k.endswith(("_endpoint", "_uri"))}
        assert metadata["token_endpoint"] == f"{issuer}/oauth/token"
        assert all(url.startswith(f"{issuer}/") for url in urls.values()), urls
        for key, url in urls.items():
            path = urlsplit(url).path.removeprefix("/tenant")
            if key.endswith("_uri") or key == "keyturn_revocations_endpoint":
                answer = await client.get(path)
            else:
                answer = await client.post(path, data={"grant_type": "client_credentials"}, headers=basic(made))
            assert answer.status_code in (200, 400), (key, answer.text)
            assert answer.status_code == 200 or answer.json()["error"] == "invalid_request", (key, answer.text)
        assert (await client.get(f"{METADATA}/other")).status_code == 404


async def test_an_issuer_without_a_path_has_no_path_aware_location(client: httpx.AsyncClient) -> None:
    """Only the root location is served when the issuer has no path."""
    assert (await client.get(f"{METADATA}/tenant")).status_code == 404
