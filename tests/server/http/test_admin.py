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
