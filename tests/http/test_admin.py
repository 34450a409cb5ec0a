"""Integration tests of the admin routes in-process: the audit log over HTTP, for admins only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from keyturn.http import create_app
from keyturn.passwords import Passwords
from keyturn.service import Service
from tests.conftest import ISSUER, Clock, make_settings
from tests.helpers import PASSWORD, bearer, login, register

pytestmark = pytest.mark.anyio


@pytest.fixture
async def app(db_path: Path, clock: Clock, fast_passwords: Passwords) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(db_path, admins="Root")
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
