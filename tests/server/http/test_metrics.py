"""Integration tests of ``GET /metrics``: the real ASGI app on a real database, scraped and parsed.

Counter values are read from the Prometheus text exposition exactly as a scraper would read it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import prometheus_client
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from keyturn.core.passwords import Passwords
from keyturn.server.config import Settings
from keyturn.server.http import create_app
from keyturn.server.http.metrics import HttpMetrics
from keyturn.server.service import Service
from tests.conftest import ISSUER, Clock, make_settings
from tests.helpers import PASSWORD, bearer, login, refresh, register, signed_in

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
METRICS_TOKEN = "metrics-scrape-token-0123456789abcdef"
SCRAPER = {"authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The suite's production settings with ``/metrics`` on, which outside development needs a token."""
    return make_settings(database_url, metrics_token=METRICS_TOKEN)


async def scrape(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> Samples:
    """Read ``/metrics`` as Prometheus does (with the scrape token unless ``headers`` say otherwise)."""
    response = await client.get("/metrics", headers=SCRAPER if headers is None else headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@asynccontextmanager
async def app_client(
    database: str | Path, clock: Clock, passwords: Passwords, *, start: bool = True, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Service, FastAPI]]:
    """A client on an app of its own settings (with the scrape token unless `overrides` say otherwise)."""
    settings = make_settings(database, **{"metrics_token": METRICS_TOKEN, **overrides})
    svc = Service(settings, passwords=passwords, clock=clock)
    try:
        if start:
            await svc.start()
        app = create_app(settings, service=svc)
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51234))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as c:
            yield c, svc, app
    finally:
        await svc.close()


async def test_login_and_refresh_outcomes_are_counted_exactly(client: httpx.AsyncClient, clock: Clock) -> None:
    """ok/failed logins; rotation, grace replay, reuse after the grace, revoked and invalid refreshes."""
    await register(client)
    tokens = await login(client)
    wrong = await client.post("/v1/auth/login", json={"username": "alice", "password": "not the password"})
    assert wrong.status_code == 401
    first = tokens["refresh_token"]
    rotated = await refresh(client, first)
    assert rotated.status_code == 200
    replayed = await refresh(client, first)  # inside reuse_grace (10 s): the same answer again
    assert replayed.status_code == 200
    assert replayed.json()["refresh_token"] == rotated.json()["refresh_token"]
    clock.advance(30)
    reused = await refresh(client, first)
    assert reused.status_code == 401
    assert (await refresh(client, rotated.json()["refresh_token"])).status_code == 401  # the session is revoked
    assert (await refresh(client, "kt_rt_not-a-real-token")).status_code == 401

    samples = await scrape(client)
    logins = {o: value(samples, "keyturn_logins_total", outcome=o) for o in ("ok", "failed", "rate_limited")}
    assert logins == {"ok": 1, "failed": 1, "rate_limited": 0}
    outcomes = ("rotated", "grace_replay", "reuse_detected", "revoked", "invalid", "expired")
    refreshes = {o: value(samples, "keyturn_refreshes_total", outcome=o) for o in outcomes}
    assert refreshes == {"rotated": 1, "grace_replay": 1, "reuse_detected": 1, "revoked": 1, "invalid": 1, "expired": 0}
    assert value(samples, "keyturn_registrations_total", outcome="ok") == 1


async def test_idle_expired_refresh_is_counted_as_expired(client: httpx.AsyncClient, clock: Clock) -> None:
    tokens = await signed_in(client)
    clock.advance(8 * 86400)  # past refresh_idle_ttl (7 days)
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    samples = await scrape(client)
    assert value(samples, "keyturn_refreshes_total", outcome="expired") == 1
    assert value(samples, "keyturn_refreshes_total", outcome="rotated") == 0


async def test_active_sessions_gauge_follows_logins_logouts_and_expiry(client: httpx.AsyncClient, clock: Clock) -> None:
    """Counted in the database, cached for 15 s of the service clock; expired sessions drop out."""
    assert value(await scrape(client), "keyturn_active_sessions") == 0
    alice = await signed_in(client, "alice")
    assert value(await scrape(client), "keyturn_active_sessions") == 0  # still the cached count
    clock.advance(16)
    assert value(await scrape(client), "keyturn_active_sessions") == 1
    await signed_in(client, "bob")
    clock.advance(16)
    assert value(await scrape(client), "keyturn_active_sessions") == 2
    assert (await client.post("/v1/auth/logout", headers=bearer(alice))).status_code == 204
    clock.advance(16)
    samples = await scrape(client)
    assert value(samples, "keyturn_active_sessions") == 1
    assert value(samples, "keyturn_logouts_total", event="logout") == 1
    clock.advance(8 * 86400)
    assert value(await scrape(client), "keyturn_active_sessions") == 0


async def test_route_labels_are_templates_never_raw_paths(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """Ids in paths, unmatched paths and odd methods all map to a bounded set of labels."""
    async with app_client(database_url, clock, fast_passwords, api_docs=True) as (client, _, _app):
        tokens = await signed_in(client)
        sid = str(uuid.uuid4())
        assert (await client.delete(f"/v1/auth/sessions/{sid}", headers=bearer(tokens))).status_code == 404
        assert (await client.get(f"/no/such/{sid}")).status_code == 404
        assert (await client.request("BREW", "/healthz")).status_code == 405
        assert (await client.get("/openapi.json")).status_code == 200
        await scrape(client)
        samples = await scrape(client)

    requests = {dict(labels)["route"] for name, labels in samples if name == "keyturn_http_requests_total"}
    assert not any(sid in route for route in requests)
    assert "/metrics" not in requests  # scrapes are not counted
    total = "keyturn_http_requests_total"
    assert value(samples, total, method="DELETE", route="/v1/auth/sessions/{session_id}", status="404") == 1
    assert value(samples, total, method="GET", route="other", status="404") == 1
    assert value(samples, total, method="other", route="/healthz", status="405") == 1
    assert value(samples, total, method="GET", route="/openapi.json", status="200") == 1
    assert value(samples, total, method="POST", route="/v1/auth/login", status="200") == 1
    count = "keyturn_http_request_duration_seconds_count"
    assert value(samples, count, method="POST", route="/v1/auth/register") == 1
    assert value(samples, "keyturn_http_request_duration_seconds_bucket", method="GET", route="other", le="5.0") == 1


async def test_each_app_has_its_own_registry(client: httpx.AsyncClient, service: Service) -> None:
    """Requests to one app never show in another's metrics, nor in prometheus_client's global registry."""
    other = create_app(service.settings, service=service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url=ISSUER) as c:
        assert (await c.get("/healthz")).status_code == 200
        assert value(await scrape(c), "keyturn_http_requests_total", method="GET", route="/healthz", status="200") == 1
    samples = await scrape(client)
    assert value(samples, "keyturn_http_requests_total", method="GET", route="/healthz", status="200") is None
    assert not [m for m in prometheus_client.REGISTRY.collect() if m.name.startswith("keyturn_")]


async def test_metrics_token_is_required_when_set(database_url: str, clock: Clock, fast_passwords: Passwords) -> None:
    """Missing, wrong or non-Bearer credentials get an OAuth-style 401; the right token gets 200."""
    async with app_client(database_url, clock, fast_passwords, metrics_token=METRICS_TOKEN) as (c, _, _app):
        for headers in ({}, {"authorization": "Bearer wrong-token"}, {"authorization": f"Basic {METRICS_TOKEN}"}):
            response = await c.get("/metrics", headers=headers)
            assert response.status_code == 401
            assert set(response.json()) == {"error", "error_description"}
            assert response.json()["error"] == "invalid_token"
            assert response.headers["www-authenticate"].startswith("Bearer")
        samples = await scrape(c, {"authorization": f"Bearer {METRICS_TOKEN}"})
    assert value(samples, "keyturn_active_sessions") == 0


async def test_disabled_metrics_are_404_and_measure_nothing(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    async with app_client(database_url, clock, fast_passwords, metrics_enabled=False) as (c, svc, app):
        await signed_in(c)
        response = await c.get("/metrics")
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
        assert app.state.metrics is None
        assert svc.ctx.audit_observers == []
        assert not [m for m in app.user_middleware if cast(object, m.cls) is HttpMetrics]


async def test_rate_limited_logins_are_counted(database_url: str, clock: Clock, fast_passwords: Passwords) -> None:
    async with app_client(database_url, clock, fast_passwords, rate_limit_login_ip="2/minute") as (c, _, _app):
        await register(c)
        await login(c)
        await login(c)
        limited = await c.post("/v1/auth/login", json={"username": "alice", "password": PASSWORD})
        assert limited.status_code == 429
        samples = await scrape(c)
    assert value(samples, "keyturn_logins_total", outcome="ok") == 2
    assert value(samples, "keyturn_logins_total", outcome="rate_limited") == 1


async def test_scrape_answers_when_the_database_was_never_reachable(
    tmp_path: Path, clock: Clock, fast_passwords: Passwords
) -> None:
    """No count yet and the database unreachable: the gauge is left out, everything else answers."""
    missing = tmp_path / "no-such-directory" / "keyturn.db"
    async with app_client(missing, clock, fast_passwords, start=False) as (c, _, _app):
        assert (await c.get("/healthz")).status_code == 200
        samples = await scrape(c)
        clock.advance(16)
        assert value(await scrape(c), "keyturn_active_sessions") is None
    assert value(samples, "keyturn_active_sessions") is None
    assert value(samples, "keyturn_http_requests_total", method="GET", route="/healthz", status="200") == 1


async def test_scrape_keeps_the_last_count_when_the_database_goes_down(
    tmp_path: Path, clock: Clock, fast_passwords: Passwords
) -> None:
    """The database directory disappears after one count: the next scrapes answer the stale value."""
    home = tmp_path / "data"
    home.mkdir()
    async with app_client(home / "keyturn.db", clock, fast_passwords) as (c, svc, _app):
        await signed_in(c)
        assert value(await scrape(c), "keyturn_active_sessions") == 1
        await svc.store.db.dispose()  # drop pooled connections: the next one must open the file again
        home.rename(tmp_path / "gone")
        clock.advance(16)
        assert (await c.get("/readyz")).status_code == 503  # the outage is real
        assert value(await scrape(c), "keyturn_active_sessions") == 1


async def test_a_failing_audit_observer_does_not_fail_a_sign_in(client: httpx.AsyncClient, service: Service) -> None:
    """Observers run inside the use case's transaction: a broken one is logged and skipped."""

    def broken(_record: object) -> None:
        raise RuntimeError("observer bug")

    service.ctx.audit_observers.insert(0, broken)
    await signed_in(client)
    assert value(await scrape(client), "keyturn_logins_total", outcome="ok") == 1


# --- what was actually sent (issue 13, finding 6) ----------------------------------------------------


async def drive(app: Any, method: str, path: str, client_sends: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Call the ASGI app as a server would, with ``client_sends`` as what arrives; what it sent back."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "https",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"auth.keyturn.test"), (b"content-type", b"application/json"),
                    (b"content-length", b"64")],
        "client": ("203.0.113.7", 51234), "server": ("auth.keyturn.test", 443),
    }  # fmt: skip
    arriving, sent = iter(client_sends), []

    async def receive() -> dict[str, Any]:
        return next(arriving, {"type": "http.disconnect"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def server_errors(samples: Samples) -> dict[str, float]:
    return {
        dict(labels)["route"]: count
        for (name, labels), count in samples.items()
        if name == "keyturn_http_requests_total" and dict(labels)["status"].startswith("5")
    }


async def test_a_client_that_leaves_mid_body_is_counted_aborted_never_as_a_500(service: Service) -> None:
    """Half a body, then the client is gone: nothing was sent, so no 5xx is counted, one aborted request is."""
    app = create_app(service.settings, service=service)
    half = {"type": "http.request", "body": b'{"username": "alice", "pass', "more_body": True}
    assert await drive(app, "POST", "/v1/auth/login", [half, {"type": "http.disconnect"}]) == []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as c:
        samples = await scrape(c)
    assert server_errors(samples) == {}
    # Left before routing (BodyLimit reads the body first), so labelled like any unrouted request.
    assert value(samples, "keyturn_http_requests_aborted_total", method="POST", route="other") == 1
    assert value(samples, "keyturn_http_request_duration_seconds_count", method="POST", route="other") is None


async def test_an_exception_before_any_response_counts_the_500_that_is_sent(service: Service) -> None:
    """An escaping exception is answered 500 by Starlette outside the middleware: that 500 is counted."""
    app = create_app(service.settings, service=service)

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom, methods=["GET"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as c:
        assert (await c.get("/boom")).status_code == 500
        samples = await scrape(c)
    assert server_errors(samples) == {"/boom": 1}
    assert value(samples, "keyturn_http_requests_aborted_total", method="GET", route="/boom") is None


def test_importing_keyturn_and_its_service_layer_loads_no_prometheus_client() -> None:
    code = "import json, sys, keyturn, keyturn.server.service; print(json.dumps('prometheus_client' in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(result.stdout) is False
