"""Integration tests of the admin routes in-process: the audit log over HTTP, for admins only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import jwt
import pytest

from keyturn.http import create_app
from keyturn.passwords import Passwords
from keyturn.service import Service
from tests.conftest import ISSUER, Clock, make_settings
from tests.helpers import PASSWORD, bearer, login, register

pytestmark = pytest.mark.anyio


@pytest.fixture
async def app(database_url: str, clock: Clock, fast_passwords: Passwords) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database_url, admins="Root")
    svc = Service(settings, passwords=fast_passwords, clock=clock)
    await svc.start()
    transport = httpx.ASGITransport(app=create_app(settings, service=svc), client=("192.0.2.8", 1))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client
    await svc.close()


async def test_admins_get_the_admin_scope_and_read_the_audit_log(app: httpx.AsyncClient) -> None:
    """A KEYTURN_ADMINS user (case-insensitive) reads events, filtered by user and event."""
    await register(app, "root")
    await register(app, "alice")
    await app.post("/v1/auth/login", json={"username": "alice", "password": "wrong password!"})
    tokens = await login(app, "root")
    assert tokens["scope"] == "profile admin"
    everything = (await app.get("/v1/admin/audit", headers=bearer(tokens))).json()["events"]
    assert [e["event"] for e in everything][:3] == ["login", "login", "register"]
    failed = await app.get("/v1/admin/audit", params={"user": "alice", "event": "login"}, headers=bearer(tokens))
    assert [(e["event"], e["outcome"], e["ip"]) for e in failed.json()["events"]] == [("login", "failed", "192.0.2.8")]
    assert PASSWORD not in failed.text


async def test_non_admins_get_403_insufficient_scope(app: httpx.AsyncClient) -> None:
    """Everyone else: 403 with error="insufficient_scope"; no token: 401."""
    await register(app, "alice")
    tokens = await login(app, "alice")
    refused = await app.get("/v1/admin/audit", headers=bearer(tokens))
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"
    assert (await app.get("/v1/admin/audit")).status_code == 401


async def test_bad_filters_are_400(app: httpx.AsyncClient) -> None:
    """A naive time or an out-of-range limit is a clear 400."""
    await register(app, "root")
    tokens = await login(app, "root")
    for params in ({"since": "2026-01-01T00:00:00"}, {"limit": "0"}, {"since": "yesterday"}):
        response = await app.get("/v1/admin/audit", params=params, headers=bearer(tokens))
        assert response.status_code == 400, params


async def test_admins_list_and_rotate_signing_keys(app: httpx.AsyncClient, clock: Clock) -> None:
    """Rotation over HTTP publishes a new key at once; with delay 0 it signs the next token."""
    await register(app, "root")
    tokens = await login(app, "root")
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


async def test_key_rotation_needs_the_admin_scope_and_a_valid_delay(app: httpx.AsyncClient) -> None:
    """Non-admins get 403 and nothing rotates; a delay that is not a duration is a 400."""
    await register(app, "alice")
    await register(app, "root")
    alice, root = await login(app, "alice"), await login(app, "root")
    assert (await app.post("/v1/admin/keys/rotate", json={}, headers=bearer(alice))).status_code == 403
    assert (await app.get("/v1/admin/keys", headers=bearer(alice))).status_code == 403
    bad = await app.post("/v1/admin/keys/rotate", json={"delay": "soon"}, headers=bearer(root))
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_request")
    assert len((await app.get("/v1/admin/keys", headers=bearer(root))).json()["keys"]) == 1
