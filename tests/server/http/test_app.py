"""Integration tests of what ``create_app`` exposes: the real ASGI app in-process on a real database.

Production settings expose nothing the operator did not ask for (issue 13, point 7): no API docs,
no OpenAPI document, no metrics without a token; HSTS when the issuer is https; the start-up log
says whether anyone may register.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx
import pytest

from keyturn.core.passwords import Passwords
from keyturn.server.http import create_app
from keyturn.server.service import Service
from tests.conftest import ISSUER, Clock, app_client, make_settings

pytestmark = pytest.mark.anyio

METRICS_TOKEN = "app-test-metrics-token-0123456789abcdef"


async def test_production_serves_no_docs_openapi_or_metrics_by_default(client: httpx.AsyncClient) -> None:
    """Without --dev, /docs, /openapi.json, the docs' assets and /metrics are 404 unless enabled."""
    for path in ("/docs", "/openapi.json", "/docs/oauth2-redirect", "/static-offline-docs/swagger-ui.css", "/metrics"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
    assert (await client.get("/healthz")).status_code == 200


async def test_api_docs_and_metrics_are_served_when_enabled(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """KEYTURN_API_DOCS=true serves /docs and /openapi.json; a metrics token turns /metrics on behind it."""
    async with app_client(database_url, clock, fast_passwords, api_docs=True, metrics_token=METRICS_TOKEN) as client:
        assert (await client.get("/openapi.json")).status_code == 200
        assert (await client.get("/docs")).status_code == 200
        assert (await client.get("/metrics")).status_code == 401
        scraped = await client.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
        assert scraped.status_code == 200


async def test_development_serves_docs_and_metrics_without_a_token(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """--dev keeps today's convenience: /docs, /openapi.json and an open /metrics."""
    async with app_client(database_url, clock, fast_passwords, env="development") as client:
        for path in ("/docs", "/openapi.json", "/metrics"):
            assert (await client.get(path)).status_code == 200, path


async def test_hsts_is_sent_when_the_issuer_is_https(client: httpx.AsyncClient) -> None:
    """Strict-Transport-Security (two years, this host only) on every response of an https issuer."""
    assert ISSUER.startswith("https://")
    for response in (await client.get("/healthz"), await client.get("/nope"), await client.get("/v1/auth/me")):
        assert response.headers["strict-transport-security"] == "max-age=63072000"


async def test_no_hsts_for_a_loopback_http_issuer(database_url: str, clock: Clock, fast_passwords: Passwords) -> None:
    """A plain-http issuer (loopback, or development) gets no HSTS: browsers would ignore it anyway."""
    async with app_client(database_url, clock, fast_passwords, issuer="http://127.0.0.1:8000") as client:
        assert "strict-transport-security" not in (await client.get("/healthz")).headers


@pytest.mark.parametrize(("allow", "said"), [(True, "registration open"), (False, "registration closed")])
async def test_startup_log_states_whether_registration_is_open(
    database_url: str, fast_passwords: Passwords, caplog: pytest.LogCaptureFixture, allow: bool, said: str
) -> None:
    """The ready line names the issuer and says whether anyone may register, and what is exposed."""
    settings = make_settings(database_url, allow_registration=allow)
    app = create_app(settings, service=Service(settings, passwords=fast_passwords))
    with caplog.at_level(logging.INFO, logger="keyturn.http"):
        async with app.router.lifespan_context(app):
            pass
    ready = [r.getMessage() for r in caplog.records if r.getMessage().startswith("keyturn ready")]
    assert len(ready) == 1
    assert ISSUER in ready[0]
    assert said in ready[0]
    assert "metrics off" in ready[0]
    assert "API docs off" in ready[0]


@pytest.mark.parametrize(
    ("overrides", "body"),
    [
        ({"env": "development"}, '<body data-email="optional" data-mail="on">'),
        ({"web_page": True}, '<body data-email="optional" data-mail="off">'),
        (
            {"web_page": True, "mail_url": "smtp://127.0.0.1:2525?starttls=off", "require_verified_email": True},
            '<body data-email="required" data-mail="on">',
        ),
    ],
)
async def test_the_web_page_is_told_the_settings_it_follows(
    database_url: str, clock: Clock, fast_passwords: Passwords, overrides: dict[str, object], body: str
) -> None:
    """The page at / learns from its <body> whether sign-up needs an address and whether mail is
    sent (without mail it offers no link to ask for); nothing else of the page changes."""
    async with app_client(database_url, clock, fast_passwords, **overrides) as client:
        page = await client.get("/")
    assert (page.status_code, page.headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert page.headers["cache-control"] == "no-cache"
    assert page.text.count("<body") == 1
    assert body in page.text


README = Path(__file__).resolve().parents[3] / "README.md"
_METHOD = re.compile(r"(GET|POST|PATCH|PUT|DELETE)")
_ROUTE = re.compile(r"(?:(GET|POST|PATCH|PUT|DELETE) )?(/[^\s`]*)")


def readme_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the README's "What you get" table names. A cell reads like
    `POST /v1/auth/register`, `/login`: a bare path shares the method of the one before and
    replaces as many of its trailing segments as it has (unless it starts alike: then it is whole);
    `PATCH`/`DELETE /path` is both methods."""
    section = README.read_text().split("## What you get", 1)[1].split("\n## ", 1)[0]
    named: set[tuple[str, str]] = set()
    for row in (line for line in section.splitlines() if line.startswith("| `")):
        methods: list[str] = []
        pending: list[str] = []
        anchor = ""
        for item in re.findall(r"`([^`]+)`", row.split("|")[1]):
            if _METHOD.fullmatch(item):
                pending.append(item)
                continue
            match = _ROUTE.fullmatch(item)
            assert match, f"not a route: {item!r}"
            path = match[2]
            if match[1]:
                methods, pending, anchor = [*pending, match[1]], [], path
            elif path.split("/")[1] != anchor.split("/")[1]:
                path = "/".join(anchor.split("/")[: -path.count("/")]) + path
            named |= {(method, path) for method in methods}
    return named


async def test_every_route_the_readme_names_is_served(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """The README's route table promises nothing the app does not route (the README's first
    command's settings: development, so /metrics is open)."""
    named = readme_routes()
    assert len(named) >= 25, sorted(named)  # the table was read, not skipped
    assert {("POST", "/v1/auth/login"), ("PATCH", "/v1/auth/sessions/{id}"), ("GET", "/readyz")} <= named
    settings = make_settings(database_url, env="development")
    svc = Service(settings, passwords=fast_passwords, clock=clock)
    await svc.start()
    try:
        app = create_app(settings, service=svc)
    finally:
        await svc.close()
    routes = {(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops}  # the routers'
    routes |= {(m, getattr(route, "path", "")) for route in app.routes for m in getattr(route, "methods", None) or ()}
    served = {(m, re.sub(r"\{\w+\}", "{}", path)) for m, path in routes}
    missing = {(m, p) for m, p in named if (m, re.sub(r"\{\w+\}", "{}", p)) not in served}
    assert not missing, sorted(missing)
