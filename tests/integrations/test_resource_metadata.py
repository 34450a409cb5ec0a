"""Integration tests of RFC 9728 protected-resource metadata through every adapter (FastAPI,
Starlette's middleware, Flask, Django and DRF): real in-process apps whose verifiers check tokens
from a real keyturn server process on loopback (this folder's ``server``).

Each refusal's ``WWW-Authenticate`` names a ``resource_metadata`` URL, and the test then fetches
that URL from the same app: a metadata URL is a promise the app must keep. Django's settings are in
this folder's conftest.py; this module is the URLconf of its Django tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.test import Client, override_settings
from django.urls import include, path
from fastapi import Depends, FastAPI
from flask import Flask
from rest_framework.request import Request as DrfRequest
from rest_framework.response import Response as DrfResponse
from rest_framework.views import APIView
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keyturn.core.tokens import AccessClaims
from keyturn.integrations import django as kt_django
from keyturn.integrations import fastapi as kt_fastapi
from keyturn.integrations import flask as kt_flask
from keyturn.integrations import starlette as kt_starlette
from keyturn.verify import ProtectedResource, Verifier
from tests.integrations.tokens import Tokens, bearer
from tests.servers import Server

pytestmark = [pytest.mark.server, pytest.mark.anyio]

API = "https://api.example.com"
WELL_KNOWN = "/.well-known/oauth-protected-resource"
Resource = str | ProtectedResource | bool | None


class Got(NamedTuple):
    status: int
    headers: Any  # the response's own mapping: case-insensitive
    body: Any  # the JSON body, or None


Get = Callable[..., Awaitable[Got]]  # await get(url, headers={}) on one app


# --- the apps: each serves GET /v1/orders (any token) and /v1/admin (scope "admin") ------------


def fastapi_app(server: Server, resource: Resource) -> Get:
    app = FastAPI()
    kt_fastapi.setup(app, Verifier(server.url, server.url, revocations=False), resource=resource)

    @app.get("/v1/orders")
    async def orders(claims: AccessClaims = Depends(kt_fastapi.require_token())) -> dict[str, str]:  # noqa: B008
        return {"sub": claims.sub}

    @app.get("/v1/admin")
    async def admin(claims: AccessClaims = Depends(kt_fastapi.require_token(["admin"]))) -> dict[str, str]:  # noqa: B008
        return {"sub": claims.sub}

    return asgi_get(app)


async def starlette_orders(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.user.claims.sub})


def starlette_app(server: Server, resource: Resource) -> Get:
    verifier = Verifier(server.url, server.url, revocations=False)
    routes = [
        Route("/v1/orders", kt_starlette.requires()(starlette_orders)),
        Route("/v1/admin", kt_starlette.requires("admin")(starlette_orders)),
    ]
    return asgi_get(Starlette(routes=routes, middleware=[kt_starlette.keyturn_middleware(verifier, resource=resource)]))


def asgi_get(app: Any) -> Get:
    async def get(url: str, headers: Mapping[str, str] = {}) -> Got:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            response = await client.get(url, headers=dict(headers))
        return Got(response.status_code, response.headers, _json(response.headers, response.content))

    return get


def flask_app(server: Server, resource: Resource) -> Get:
    app = Flask(__name__)
    keyturn = kt_flask.Keyturn(resource=resource)  # the app factory pattern
    keyturn.init_app(app, Verifier(server.url, server.url, revocations=False))

    @app.get("/v1/orders")
    @kt_flask.require_token()
    def orders() -> dict[str, str]:
        return {"sub": kt_flask.current_claims().sub}

    @app.get("/v1/admin")
    @kt_flask.require_token(scopes=["admin"])
    def admin() -> dict[str, str]:
        return {"sub": kt_flask.current_claims().sub}

    client = app.test_client()

    async def get(url: str, headers: Mapping[str, str] = {}) -> Got:
        response = client.get(url, headers=dict(headers))
        return Got(response.status_code, response.headers, response.get_json(silent=True))

    return get


@kt_django.require_token()
def django_orders(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"sub": request.keyturn_claims.sub})


@kt_django.require_token(scopes=["admin"])
def django_admin(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"sub": request.keyturn_claims.sub})


class DrfOrders(APIView):
    def get(self, request: DrfRequest) -> DrfResponse:
        return DrfResponse({"sub": request.auth.sub})


class DrfAdmin(DrfOrders):
    required_scopes = ("admin",)  # read by the default permission, HasScopes


urlpatterns = [
    path("v1/orders", django_orders),
    path("v1/admin", django_admin),
    path("v1/drf/orders", DrfOrders.as_view()),
    path("v1/drf/admin", DrfAdmin.as_view()),
    path("", include("keyturn.integrations.django.urls")),
]


class UrlsWithoutMetadata:
    """A URLconf that does not include keyturn.integrations.django.urls."""

    urlpatterns = urlpatterns[:-1]


@contextmanager
def django_app(server: Server, resource: Resource, *, drf: bool = False, urls: Any = __name__) -> Iterator[Get]:
    """Django's middleware and decorator, or DRF alone (``/v1/drf/...``), configured by settings only."""
    setting = {"ISSUER": server.url, "REVOCATIONS": False, "RESOURCE": resource}
    hosts = ["api.example.com", "127.0.0.1", "testserver"]
    middleware: dict[str, Any] = {"MIDDLEWARE": []} if drf else {}
    with override_settings(KEYTURN=setting, ROOT_URLCONF=urls, ALLOWED_HOSTS=hosts, **middleware):
        client = Client()

        async def get(url: str, headers: Mapping[str, str] = {}) -> Got:
            parts = urlsplit(url.replace("/v1/", "/v1/drf/") if drf else url)
            secure = parts.scheme == "https"
            response = client.get(parts.path, secure=secure, headers={**headers, "host": parts.netloc})
            return Got(response.status_code, response.headers, _json(response.headers, response.content))

        yield get


@contextmanager
def app_of(adapter: str, server: Server, resource: Resource) -> Iterator[Get]:
    if adapter in ("django", "drf"):
        with django_app(server, resource, drf=adapter == "drf") as get:
            yield get
    else:
        yield {"fastapi": fastapi_app, "starlette": starlette_app, "flask": flask_app}[adapter](server, resource)


ADAPTERS = ["fastapi", "starlette", "flask", "django", "drf"]


def _json(headers: Mapping[str, str], content: bytes) -> Any:
    return json.loads(content) if headers.get("content-type", "").startswith("application/json") else None


def named(challenge: str) -> str:
    """The URL a challenge names in ``resource_metadata``."""
    found = re.search(r'resource_metadata="([^"]*)"', challenge)
    assert found is not None, challenge
    return found.group(1)


def document(server: Server, resource: str) -> dict[str, Any]:
    return {"resource": resource, "authorization_servers": [server.url], "bearer_methods_supported": ["header"]}


# --- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize(("resource", "url"), [(API, f"{API}{WELL_KNOWN}"), (f"{API}/v1", f"{API}{WELL_KNOWN}/v1")])
async def test_a_401_names_a_metadata_url_the_app_serves(adapter: str, server: Server, resource: str, url: str) -> None:
    """No token: the challenge names the (path-aware) well-known URL, and that URL answers the document."""
    with app_of(adapter, server, resource) as get:
        refused = await get(f"{API}/v1/orders")
        assert refused.status == 401
        assert refused.headers["WWW-Authenticate"] == f'Bearer realm="api", resource_metadata="{url}"'
        metadata = await get(named(refused.headers["WWW-Authenticate"]))
    assert metadata.status == 200
    assert metadata.headers["Content-Type"].startswith("application/json")
    assert metadata.headers["Cache-Control"] == "public, max-age=3600"
    assert metadata.body == document(server, resource)


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_refused_tokens_and_missing_scopes_name_it_too(adapter: str, server: Server, tokens: Tokens) -> None:
    """401 invalid_token and 403 insufficient_scope challenges carry resource_metadata as well (§5.1)."""
    url = f"{API}{WELL_KNOWN}/v1"
    with app_of(adapter, server, f"{API}/v1") as get:
        garbage = await get(f"{API}/v1/orders", bearer("garbage"))
        scope = await get(f"{API}/v1/admin", bearer(tokens.fresh()))
        granted = await get(f"{API}/v1/orders", bearer(tokens.fresh()))
    assert (garbage.status, garbage.body["error"]) == (401, "invalid_token")
    assert (
        garbage.headers["WWW-Authenticate"] == f'Bearer realm="api", error="invalid_token", resource_metadata="{url}"'
    )
    assert (scope.status, scope.body["error"]) == (403, "insufficient_scope")
    challenge = f'Bearer realm="api", error="insufficient_scope", scope="admin", resource_metadata="{url}"'
    assert scope.headers["WWW-Authenticate"] == challenge
    assert (granted.status, granted.body) == (200, {"sub": tokens.sub})


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_the_metadata_needs_no_token(adapter: str, server: Server) -> None:
    """A client sending a token it still holds (here a bad one) gets the document, not a 401."""
    with app_of(adapter, server, API) as get:
        metadata = await get(f"{API}{WELL_KNOWN}", bearer("garbage"))
    assert (metadata.status, metadata.body) == (200, document(server, API))


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_only_the_path_aware_url_is_served(adapter: str, server: Server) -> None:
    """With the identifier https://api.example.com/v1, the bare well-known URL and another path are 404."""
    with app_of(adapter, server, f"{API}/v1") as get:
        assert (await get(f"{API}{WELL_KNOWN}/v1")).status == 200
        assert (await get(f"{API}{WELL_KNOWN}")).status == 404
        assert (await get(f"{API}{WELL_KNOWN}/v2")).status == 404


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("origin", [API, "http://127.0.0.1:8000"])
async def test_without_a_resource_the_identifier_is_the_requests_origin(
    adapter: str, server: Server, origin: str
) -> None:
    """Default: https://<host> (http on loopback) is the identifier; its document is private to the client."""
    with app_of(adapter, server, None) as get:
        refused = await get(f"{origin}/v1/orders")
        assert refused.headers["WWW-Authenticate"] == f'Bearer realm="api", resource_metadata="{origin}{WELL_KNOWN}"'
        metadata = await get(named(refused.headers["WWW-Authenticate"]))
    assert (metadata.status, metadata.body) == (200, document(server, origin))
    assert metadata.headers["Cache-Control"] == "private, max-age=3600"


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize(("resource", "origin"), [(None, "http://api.example.com"), (False, API)])
async def test_nothing_is_published_over_plain_http_or_when_turned_off(
    adapter: str, server: Server, resource: Resource, origin: str
) -> None:
    """Derived over http from a non-loopback host, or resource=False: a bare challenge, and no document."""
    with app_of(adapter, server, resource) as get:
        refused = await get(f"{origin}/v1/orders")
        metadata = await get(f"{origin}{WELL_KNOWN}")
    assert (refused.status, refused.headers["WWW-Authenticate"]) == (401, 'Bearer realm="api"')
    assert metadata.status == 404


async def test_optional_members_reach_the_document(server: Server) -> None:
    """A ProtectedResource's scopes, name and documentation are published (Flask shown; all share the code)."""
    resource = ProtectedResource(API, scopes=["orders:read"], name="Orders", documentation=f"{API}/docs")
    metadata = await flask_app(server, resource)(f"{API}{WELL_KNOWN}")
    assert metadata.body == {
        **document(server, API),
        "scopes_supported": ["orders:read"],
        "resource_name": "Orders",
        "resource_documentation": f"{API}/docs",
    }


BAD = [
    (f"{API}/v1?tenant=a", "no query or fragment"),
    (f"{API}#top", "no query or fragment"),
    (f'{API}/"v1', "characters it may not hold"),
    ("http://api.example.com", "must use https"),
]


@pytest.mark.parametrize("adapter", ["fastapi", "starlette", "flask"])
@pytest.mark.parametrize(("resource", "complaint"), BAD)
def test_setup_refuses_a_resource_it_cannot_publish(adapter: str, resource: str, complaint: str) -> None:
    """setup(), keyturn_middleware() and Keyturn() refuse the identifier at once, saying why."""
    verifier = Verifier("https://auth.example.com", API, revocations=False)
    setups: dict[str, Callable[[], Any]] = {
        "fastapi": lambda: kt_fastapi.setup(FastAPI(), verifier, resource=resource),
        "starlette": lambda: kt_starlette.keyturn_middleware(verifier, resource=resource),
        "flask": lambda: kt_flask.Keyturn(Flask(__name__), verifier, resource=resource),
    }
    with pytest.raises(ValueError, match=complaint):
        setups[adapter]()


@pytest.mark.parametrize(("resource", "complaint"), [*BAD, (["https://a.example"], "must be an https URL")])
def test_django_refuses_a_resource_setting_at_start_up(server: Server, resource: object, complaint: str) -> None:
    """KEYTURN["RESOURCE"] is checked when the middleware is built, naming the key and the reason."""
    setting = {"ISSUER": server.url, "RESOURCE": resource}
    with (
        override_settings(KEYTURN=setting),
        pytest.raises(ImproperlyConfigured, match=rf"RESOURCE.*{re.escape(complaint)}"),
    ):
        kt_django.KeyturnMiddleware(lambda request: None)


@pytest.mark.parametrize("drf", [False, True])
async def test_django_names_no_url_its_urlconf_does_not_serve(server: Server, drf: bool) -> None:
    """Without keyturn.integrations.django.urls in the URLconf, challenges stay bare: no URL nobody serves."""
    with django_app(server, API, drf=drf, urls=UrlsWithoutMetadata) as get:
        refused = await get(f"{API}/v1/orders")
        metadata = await get(f"{API}{WELL_KNOWN}")
    assert (refused.status, refused.headers["WWW-Authenticate"]) == (401, 'Bearer realm="api"')
    assert metadata.status == 404


async def test_drf_names_the_url_without_keyturns_exception_handler(server: Server) -> None:
    """DRF's own handler takes the challenge from KeyturnAuthentication.authenticate_header, URL included."""
    rest = {"UNAUTHENTICATED_USER": None, "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]}
    with django_app(server, API, drf=True) as get, override_settings(REST_FRAMEWORK=rest):
        refused = await get(f"{API}/v1/orders")
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"] == f'Bearer realm="api", resource_metadata="{API}{WELL_KNOWN}"'
    assert set(refused.body) == {"detail"}


def test_fastapi_leaves_the_metadata_route_out_of_openapi(server: Server) -> None:
    """The well-known route is infrastructure, not part of the API's documented surface."""
    app = FastAPI()
    kt_fastapi.setup(app, Verifier(server.url, server.url, revocations=False), resource=f"{API}/v1")
    assert any(getattr(route, "path", None) == f"{WELL_KNOWN}/v1" for route in app.routes)
    assert not any(p.startswith("/.well-known") for p in app.openapi()["paths"])
