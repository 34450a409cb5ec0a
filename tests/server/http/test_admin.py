"""Integration tests of the admin routes in-process: the audit log and keys over HTTP, for users
with the admin role only (granted in the database, never by a name anyone can register)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from keyturn.core.errors import MissingToken
from keyturn.core.passwords import Passwords
from keyturn.server.http import create_app
from keyturn.server.service import Service
from tests.conftest import ISSUER, Clock, make_settings
from tests.helpers import PASSWORD, assert_refused, bearer, execute, login, register

pytestmark = pytest.mark.anyio

LACKS_ADMIN = "The access token lacks the scope(s): admin."


@pytest.fixture
async def svc(database_url: str, clock: Clock, fast_passwords: Passwords) -> AsyncIterator[Service]:
    service = Service(make_settings(database_url), passwords=fast_passwords, clock=clock)
    await service.start()
    yield service
    await service.close()


@pytest.fixture
async def app(svc: Service) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(svc.settings, service=svc), client=("192.0.2.8", 1))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client


async def root(app: httpx.AsyncClient, svc: Service) -> dict[str, Any]:
    """Register ``root``, grant it the admin role as the operator would, and sign it in."""
    await register(app, "root")
    assert await svc.admin.grant_role("root", "admin")
    return await login(app, "root")


async def test_admins_get_the_admin_scope_and_read_the_audit_log(app: httpx.AsyncClient, svc: Service) -> None:
    """A user with the admin role reads events, filtered by user and event."""
    await register(app, "alice")
    await app.post("/v1/auth/login", json={"username": "alice", "password": "wrong password!"})
    tokens = await root(app, svc)
    assert tokens["scope"] == "profile admin"
    everything = (await app.get("/v1/admin/audit", headers=bearer(tokens))).json()["events"]
    assert [e["event"] for e in everything][:4] == ["login", "role_granted", "register", "login"]
    failed = await app.get("/v1/admin/audit", params={"user": "alice", "event": "login"}, headers=bearer(tokens))
    assert [(e["event"], e["outcome"], e["ip"]) for e in failed.json()["events"]] == [("login", "failed", "192.0.2.8")]
    assert PASSWORD not in failed.text


async def test_non_admins_get_403_insufficient_scope(app: httpx.AsyncClient) -> None:
    """Everyone else: 403 with error="insufficient_scope"; no token: 401."""
    await register(app, "alice")
    tokens = await login(app, "alice")
    refused = await app.get("/v1/admin/audit", headers=bearer(tokens))
    assert_refused(refused, 403, "insufficient_scope", LACKS_ADMIN)
    assert 'error="insufficient_scope", scope="admin"' in refused.headers["www-authenticate"]
    assert_refused(await app.get("/v1/admin/audit"), 401, "invalid_token", MissingToken.description)


async def test_bad_filters_are_400(app: httpx.AsyncClient, svc: Service) -> None:
    """A naive time or an out-of-range limit is a clear 400."""
    tokens = await root(app, svc)
    for params in ({"since": "2026-01-01T00:00:00"}, {"limit": "0"}, {"since": "yesterday"}):
        response = await app.get("/v1/admin/audit", params=params, headers=bearer(tokens))
        assert_refused(response, 400, "invalid_request")


async def test_admins_list_and_rotate_signing_keys(app: httpx.AsyncClient, svc: Service, clock: Clock) -> None:
    """Rotation over HTTP publishes a new key at once; with delay 0 it signs the next token."""
    tokens = await root(app, svc)
    [first] = (await app.get("/v1/admin/keys", headers=bearer(tokens))).json()["keys"]
    assert (first["published"], first["signing"]) == (True, True)
    later = await app.post("/v1/admin/keys/rotate", json={}, headers=bearer(tokens))
    assert later.status_code == 201
    assert (later.json()["published"], later.json()["signing"]) == (True, False)  # after the default 10m
    clock.advance(1)
    now = await app.post("/v1/admin/keys/rotate", json={"delay": "0s"}, headers=bearer(tokens))
    assert (now.json()["published"], now.json()["signing"]) == (True, True)
    listed = (await app.get("/v1/admin/keys", headers=bearer(tokens))).json()["keys"]
    assert {k["kid"] for k in listed} == {first["kid"], later.json()["kid"], now.json()["kid"]}
    fresh = await login(app, "root")
    assert jwt.get_unverified_header(fresh["access_token"])["kid"] == now.json()["kid"]
    jwks = (await app.get("/.well-known/jwks.json")).json()
    assert {k["kid"] for k in jwks["keys"]} >= {later.json()["kid"], now.json()["kid"]}


async def test_key_rotation_needs_the_admin_scope_and_a_valid_delay(app: httpx.AsyncClient, svc: Service) -> None:
    """Non-admins get 403 and nothing rotates; a delay that is not a duration is a 400."""
    await register(app, "alice")
    alice, admin = await login(app, "alice"), await root(app, svc)
    assert_refused(await app.post("/v1/admin/keys/rotate", json={}, headers=bearer(alice)), 403, "insufficient_scope")
    assert_refused(await app.get("/v1/admin/keys", headers=bearer(alice)), 403, "insufficient_scope")
    bad = await app.post("/v1/admin/keys/rotate", json={"delay": "soon"}, headers=bearer(admin))
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_request")
    assert len((await app.get("/v1/admin/keys", headers=bearer(admin))).json()["keys"]) == 1


FULLWIDTH_ADMIN = "\uff21\uff24\uff2d\uff29\uff2e"  # what NFKC folds to "ADMIN"


@pytest.mark.parametrize("name", ["admin", FULLWIDTH_ADMIN, "root", "Administrator"])
async def test_a_claimable_name_grants_no_authority(app: httpx.AsyncClient, name: str) -> None:
    """Regression (review finding 2): registering a name an operator might use (even in full-width
    form) gets no admin scope and a 403 from the admin API; only a granted role counts."""
    await register(app, name)
    tokens = await login(app, name)
    assert tokens["scope"] == "profile"
    assert_refused(await app.get("/v1/admin/audit", headers=bearer(tokens)), 403, "insufficient_scope", LACKS_ADMIN)


async def test_a_revoked_role_is_refused_at_once_and_gone_at_the_next_refresh(
    app: httpx.AsyncClient, svc: Service
) -> None:
    """Regression (review finding 2): revoking the role ends admin access on the very next request,
    though the access token still carries the scope, and the next refresh drops the scope; a
    grant shows up at the next refresh the same way."""
    tokens = await root(app, svc)
    assert (await app.get("/v1/admin/keys", headers=bearer(tokens))).status_code == 200
    assert await svc.admin.revoke_role("root", "admin")
    assert_refused(await app.get("/v1/admin/keys", headers=bearer(tokens)), 403, "insufficient_scope", LACKS_ADMIN)
    renewed = (await app.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).json()
    assert renewed["scope"] == "profile"
    assert jwt.decode(renewed["access_token"], options={"verify_signature": False})["scope"] == "profile"
    assert await svc.admin.grant_role("root", "admin")
    regranted = (await app.post("/v1/auth/refresh", json={"refresh_token": renewed["refresh_token"]})).json()
    assert regranted["scope"] == "profile admin"
    assert (await app.get("/v1/admin/keys", headers=bearer(regranted))).status_code == 200


async def test_a_session_scope_stored_by_an_older_release_does_not_keep_admin(
    app: httpx.AsyncClient, svc: Service, database_url: str
) -> None:
    """A session whose stored scope holds ``admin`` (how KEYTURN_ADMINS used to freeze it) gets
    no admin scope at its next refresh unless the user holds the role."""
    await register(app, "root")
    tokens = await login(app, "root")
    await execute(database_url, "UPDATE sessions SET scope = 'profile admin'")
    renewed = (await app.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).json()
    assert renewed["scope"] == "profile"


# --- the OAuth client registry ----------------------------------------------------------------


async def test_admins_manage_clients_and_see_each_secret_once(app: httpx.AsyncClient, svc: Service) -> None:
    """Register (201, the secret in the answer), list (no secret, no MAC), rotate (a new secret;
    the old one refused at the token endpoint), disable (its token refused by introspection),
    enable; each change audited with the admin as its user."""
    tokens = await root(app, svc)
    made = await app.post(
        "/v1/admin/clients", json={"client_id": "billing-cron", "scope": "orders:read"}, headers=bearer(tokens)
    )
    assert made.status_code == 201, made.text
    first = made.json()
    assert (first["client_id"], first["auth_method"], first["grant_types"]) == (
        "billing-cron", "client_secret_basic", ["client_credentials"],
    )  # fmt: skip
    listed = await app.get("/v1/admin/clients", headers=bearer(tokens))
    assert [c["client_id"] for c in listed.json()["clients"]] == ["billing-cron"]
    assert first["client_secret"] not in listed.text
    assert "secret_mac" not in listed.text
    rotated = await app.post("/v1/admin/clients/billing-cron/rotate-secret", headers=bearer(tokens))
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["client_secret"]
    assert second != first["client_secret"]
    old = await app.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=("billing-cron", first["client_secret"])
    )
    assert_refused(old, 401, "invalid_client", "Client authentication failed.")
    machine = await app.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("billing-cron", second))
    assert machine.status_code == 200, machine.text
    disabled = await app.post("/v1/admin/clients/billing-cron/disable", headers=bearer(tokens))
    assert disabled.json()["disabled_at"] is not None
    enabled = await app.post("/v1/admin/clients/billing-cron/enable", headers=bearer(tokens))
    assert enabled.json()["disabled_at"] is None
    await svc.clients.add("resource-api", grant_types=())
    reader = (await svc.clients.rotate_secret("resource-api")).secret
    asked = await app.post(
        "/oauth/introspect", data={"token": machine.json()["access_token"]}, auth=("resource-api", reader)
    )
    assert asked.json() == {"active": False}  # ended by the disable, whatever the enable did
    events = (await app.get("/v1/admin/audit", params={"event": ["client_added", "client_secret_rotated",
              "client_disabled", "client_enabled"]}, headers=bearer(tokens))).json()["events"]  # fmt: skip
    admin_id = str((await svc.admin.user("root")).id)
    by_admin = [e["event"] for e in events if e["user_id"] == admin_id]
    assert by_admin == ["client_enabled", "client_disabled", "client_secret_rotated", "client_added"]


@pytest.mark.parametrize(
    ("body", "description"),
    [
        ({"client_id": "Billing"}, "a client id is 3 to 64 characters of a-z, 0-9, '.', '_' and '-', starting "
                                   "with a letter or digit."),
        ({"client_id": "keyturn"}, "'keyturn' is the first-party client (KEYTURN_CLIENT_ID)."),
        ({"client_id": "billing", "auth_method": "private_key_jwt"},
         "auth_method is one of: client_secret_basic, client_secret_post."),
        ({"client_id": "billing", "grant_types": ["password"]}, "grant_types are among: client_credentials."),
        ({"client_id": "billing", "scope": 'a"b'}, "'a\"b' is not a scope name (RFC 6749 §3.3)."),
    ],
    ids=["bad-id", "first-party", "method", "grant", "scope"],
)  # fmt: skip
async def test_a_client_that_cannot_be_registered_is_400_with_the_reason(
    app: httpx.AsyncClient, svc: Service, body: dict[str, Any], description: str
) -> None:
    """Each refusal names what is wrong; nothing is stored."""
    tokens = await root(app, svc)
    assert_refused(
        await app.post("/v1/admin/clients", json=body, headers=bearer(tokens)), 400, "invalid_request", description
    )
    assert await svc.clients.registered() == []


async def test_client_routes_need_an_admin_and_name_an_existing_client(app: httpx.AsyncClient, svc: Service) -> None:
    """A user without the role gets 403; an unknown client 404; a taken id 400."""
    await register(app, "alice")
    alice = await login(app, "alice")
    assert_refused(await app.get("/v1/admin/clients", headers=bearer(alice)), 403, "insufficient_scope", LACKS_ADMIN)
    tokens = await root(app, svc)
    missing = await app.post("/v1/admin/clients/nobody/disable", headers=bearer(tokens))
    assert_refused(missing, 404, "not_found", "No client named 'nobody'.")
    assert (await app.post("/v1/admin/clients", json={"client_id": "dup"}, headers=bearer(tokens))).status_code == 201
    taken = await app.post("/v1/admin/clients", json={"client_id": "dup"}, headers=bearer(tokens))
    assert_refused(taken, 400, "invalid_request", "A client named 'dup' exists.")


async def test_a_revoked_admin_role_stops_client_changes_in_the_same_transaction(
    app: httpx.AsyncClient, svc: Service
) -> None:
    """The role is read again where the change is written: revoked after the token was issued,
    the registration is refused (403) and nothing is stored."""
    tokens = await root(app, svc)
    assert await svc.admin.revoke_role("root", "admin")
    refused = await app.post("/v1/admin/clients", json={"client_id": "billing"}, headers=bearer(tokens))
    assert_refused(refused, 403, "insufficient_scope", LACKS_ADMIN)
    assert await svc.clients.registered() == []
