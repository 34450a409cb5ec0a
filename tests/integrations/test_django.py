"""Integration tests of keyturn.integrations.django and its DRF classes: real Django and DRF (test
client) verifying tokens against the JWKS of a real keyturn server process on loopback.

Django's settings are in this folder's conftest.py; this module is the URLconf.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from keyturn.integrations.django import KeyturnMiddleware, config, get_verifier, require_token
from keyturn.integrations.django.drf import HasScopes, KeyturnPrincipal
from tests.integrations.tokens import Tokens, bearer
from tests.servers import Server, free_port

pytestmark = pytest.mark.server


def public(request: HttpRequest) -> JsonResponse:
    claims = request.keyturn_claims
    return JsonResponse({"sub": None if claims is None else claims.sub})


@require_token()
def claims(request: HttpRequest) -> JsonResponse:
    found = request.keyturn_claims
    return JsonResponse({"sub": found.sub, "scope": list(found.scope)})


@require_token(scopes=["profile"])
def profile(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"sub": request.keyturn_claims.sub})


@require_token(scopes="admin")
def admin(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"sub": request.keyturn_claims.sub})


@require_token()
async def in_async_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"sub": request.keyturn_claims.sub})


class DrfProfile(APIView):
    required_scopes = ("profile",)  # read by the default permission, HasScopes

    def get(self, request: Request) -> Response:
        user = request.user
        assert isinstance(user, KeyturnPrincipal)
        assert request.auth is user.claims
        return Response({"username": user.username, "pk": user.pk, "str": str(user), "scope": list(user.scope)})


class AdminOnly(HasScopes):
    required_scopes = ("admin",)


class DrfAdmin(APIView):
    permission_classes = (AdminOnly,)

    def get(self, request: Request) -> Response:
        return Response({"sub": request.auth.sub})


urlpatterns = [
    path("public", public),
    path("claims", claims),
    path("profile", profile),
    path("admin", admin),
    path("async", in_async_view),
    path("drf/profile", DrfProfile.as_view()),
    path("drf/admin", DrfAdmin.as_view()),
]


@pytest.fixture(scope="module", autouse=True)
def keyturn_setting(server: Server) -> Iterator[dict[str, Any]]:
    """KEYTURN points at this module's server (its audience is its issuer, the server's default)."""
    setting = {"ISSUER": server.url, "AUDIENCE": server.url}
    with override_settings(KEYTURN=setting):
        yield setting


@pytest.fixture
def client() -> Client:
    """A test client with KeyturnMiddleware installed."""
    return Client()


@pytest.fixture
def bare_client() -> Iterator[Client]:
    """A test client with no middleware at all: the decorator and DRF verify by themselves."""
    with override_settings(MIDDLEWARE=[]):
        yield Client()


def assert_refused(response: Any, status: int, error: str) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert response.status_code == status
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert response.headers["Cache-Control"] == "no-store"
    return body


# --- middleware and decorator ---


def test_valid_token_reaches_the_view_with_its_claims(client: Client, tokens: Tokens) -> None:
    """A real token from the server → 200, and the view sees its sub and scope."""
    response = client.get("/claims", headers=bearer(tokens.fresh()))
    assert response.status_code == 200
    assert response.json() == {"sub": tokens.sub, "scope": ["profile"]}


def test_middleware_lets_requests_without_a_token_through(client: Client) -> None:
    """No Authorization header: a public view runs with `request.keyturn_claims = None`."""
    response = client.get("/public")
    assert response.status_code == 200
    assert response.json() == {"sub": None}


def test_middleware_sets_claims_for_public_views(client: Client, tokens: Tokens) -> None:
    """A public view sees the claims of a valid token too."""
    assert client.get("/public", headers=bearer(tokens.fresh())).json() == {"sub": tokens.sub}


def test_missing_header_is_401_with_a_bare_bearer_challenge(client: Client) -> None:
    """No Authorization header on a guarded view → 401, `WWW-Authenticate: Bearer realm="api"`."""
    response = client.get("/claims")
    assert_refused(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("token", ["garbage", "a.b.c"])
def test_garbage_token_is_401_even_on_a_public_view(client: Client, token: str) -> None:
    """A bad bearer token is refused by the middleware (401 invalid_token) before any view runs."""
    response = client.get("/public", headers=bearer(token))
    assert_refused(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'


def test_tampered_token_is_401(client: Client, tokens: Tokens) -> None:
    """A real token whose payload was edited to add "admin" → 401, bad signature."""
    body = assert_refused(client.get("/admin", headers=bearer(tokens.tampered())), 401, "invalid_token")
    assert "signature" in body["error_description"]


def test_expired_token_is_401(client: Client, server: Server, tokens: Tokens) -> None:
    """A real token past its `exp`, with LEEWAY 0 → 401 saying it expired."""
    with override_settings(KEYTURN={"ISSUER": server.url, "LEEWAY": 0}):
        body = assert_refused(client.get("/claims", headers=bearer(tokens.expired())), 401, "invalid_token")
    assert "expired" in body["error_description"]


def test_missing_scope_is_403_insufficient_scope(client: Client, tokens: Tokens) -> None:
    """A valid "profile" token on a view needing "admin" → 403 naming the missing scope."""
    response = client.get("/admin", headers=bearer(tokens.fresh()))
    assert_refused(response, 403, "insufficient_scope")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api", error="insufficient_scope", scope="admin"'


def test_granted_scope_is_200(client: Client, tokens: Tokens) -> None:
    """A valid "profile" token on a view needing "profile" → 200."""
    response = client.get("/profile", headers=bearer(tokens.fresh()))
    assert response.status_code == 200
    assert response.json() == {"sub": tokens.sub}


def test_token_signed_by_another_instance_is_401(client: Client, tokens: Tokens) -> None:
    """A token for this issuer signed with a key the server never published → 401."""
    body = assert_refused(client.get("/claims", headers=bearer(tokens.foreign())), 401, "invalid_token")
    assert "unknown key" in body["error_description"]


def test_decorator_works_without_the_middleware(bare_client: Client, tokens: Tokens) -> None:
    """Without KeyturnMiddleware the decorator verifies the header itself: 401, 403, 200."""
    assert_refused(bare_client.get("/claims"), 401, "invalid_token")
    assert_refused(bare_client.get("/claims", headers=bearer("garbage")), 401, "invalid_token")
    assert_refused(bare_client.get("/admin", headers=bearer(tokens.fresh())), 403, "insufficient_scope")
    response = bare_client.get("/profile", headers=bearer(tokens.fresh()))
    assert response.status_code == 200
    assert response.json() == {"sub": tokens.sub}


def test_guarded_views_need_no_csrf_token(tokens: Tokens) -> None:
    """POST with a bearer token passes Django's CSRF check (a browser never sends the token by itself)."""
    middleware = ["django.middleware.csrf.CsrfViewMiddleware", "keyturn.integrations.django.KeyturnMiddleware"]
    with override_settings(MIDDLEWARE=middleware):
        strict = Client(enforce_csrf_checks=True)
        assert strict.post("/claims", headers=bearer(tokens.fresh())).status_code == 200
        assert strict.post("/public").status_code == 403  # unguarded views keep the CSRF check


def test_unreachable_keys_are_503_with_retry_after(client: Client, tokens: Tokens) -> None:
    """KEYTURN pointing at an issuer that does not answer → 503 temporarily_unavailable with Retry-After."""
    with override_settings(KEYTURN={"ISSUER": f"http://127.0.0.1:{free_port()}"}):
        response = client.get("/claims", headers=bearer(tokens.fresh()))
    assert_refused(response, 503, "temporarily_unavailable")
    assert response.headers["Retry-After"] == "1"


@pytest.mark.anyio
async def test_async_stack_and_async_view(tokens: Tokens) -> None:
    """Under ASGI the middleware runs async: 401 without a token, 200 with one, 401 for garbage."""
    client = AsyncClient()
    assert_refused(await client.get("/async"), 401, "invalid_token")
    assert_refused(await client.get("/public", headers=bearer("garbage")), 401, "invalid_token")
    response = await client.get("/async", headers=bearer(tokens.fresh()))
    assert response.status_code == 200
    assert response.json() == {"sub": tokens.sub}


@pytest.mark.anyio
async def test_async_view_without_the_middleware(tokens: Tokens) -> None:
    """Without KeyturnMiddleware the decorator of an async view verifies the header itself."""
    with override_settings(MIDDLEWARE=[]):
        client = AsyncClient()
        assert_refused(await client.get("/async"), 401, "invalid_token")
        response = await client.get("/async", headers=bearer(tokens.fresh()))
    assert response.status_code == 200
    assert response.json() == {"sub": tokens.sub}


# --- Django REST Framework ---


def test_drf_valid_token_authenticates_a_principal(bare_client: Client, tokens: Tokens) -> None:
    """KeyturnAuthentication: request.user is a principal named by sub, request.auth the claims."""
    response = bare_client.get("/drf/profile", headers=bearer(tokens.fresh()))
    assert response.status_code == 200
    assert response.json() == {"username": tokens.sub, "pk": tokens.sub, "str": tokens.sub, "scope": ["profile"]}


def test_drf_behind_the_middleware(client: Client, tokens: Tokens) -> None:
    """Middleware and DRF together: the token is verified once more from the cache, 200."""
    assert client.get("/drf/profile", headers=bearer(tokens.fresh())).status_code == 200


def test_drf_missing_header_is_401_with_a_bearer_challenge(bare_client: Client) -> None:
    """No token on a DRF view → 401 with `WWW-Authenticate: Bearer realm="api"` and keyturn's body."""
    response = bare_client.get("/drf/profile")
    assert_refused(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("kind", ["garbage", "tampered", "foreign"])
def test_drf_bad_token_is_401_invalid_token(bare_client: Client, tokens: Tokens, kind: str) -> None:
    """Garbage, tampered and foreign tokens → 401 `error="invalid_token"` in keyturn's shape."""
    token = "garbage" if kind == "garbage" else getattr(tokens, kind)()
    response = bare_client.get("/drf/profile", headers=bearer(token))
    assert_refused(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'


def test_drf_expired_token_is_401(bare_client: Client, server: Server, tokens: Tokens) -> None:
    """An expired token on a DRF view → 401 saying it expired."""
    with override_settings(KEYTURN={"ISSUER": server.url, "LEEWAY": 0}):
        response = bare_client.get("/drf/profile", headers=bearer(tokens.expired()))
    assert "expired" in assert_refused(response, 401, "invalid_token")["error_description"]


def test_drf_missing_scope_is_403_insufficient_scope(bare_client: Client, tokens: Tokens) -> None:
    """HasScopes (scopes as a class attribute) → 403 insufficient_scope naming the scope."""
    response = bare_client.get("/drf/admin", headers=bearer(tokens.fresh()))
    assert_refused(response, 403, "insufficient_scope")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api", error="insufficient_scope", scope="admin"'


def test_drf_unreachable_keys_are_503_with_retry_after(bare_client: Client, tokens: Tokens) -> None:
    """DRF with KEYTURN pointing at an issuer that does not answer → 503 temporarily_unavailable."""
    with override_settings(KEYTURN={"ISSUER": f"http://127.0.0.1:{free_port()}"}):
        response = bare_client.get("/drf/profile", headers=bearer(tokens.fresh()))
    assert_refused(response, 503, "temporarily_unavailable")
    assert response.headers["Retry-After"] == "1"


def test_drf_other_errors_keep_drfs_shape(bare_client: Client, tokens: Tokens) -> None:
    """keyturn_exception_handler leaves errors that are not keyturn's to DRF: 405 `{"detail": ...}`."""
    response = bare_client.post("/drf/profile", headers=bearer(tokens.fresh()))
    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "POST" not allowed.'}


def test_drf_default_exception_handler_shape(bare_client: Client, tokens: Tokens) -> None:
    """Without keyturn_exception_handler, DRF answers the same statuses in its own `{"detail"}` shape."""
    rest = {"UNAUTHENTICATED_USER": None, "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]}
    with override_settings(REST_FRAMEWORK=rest):
        missing = bare_client.get("/drf/profile")
        garbage = bare_client.get("/drf/profile", headers=bearer("garbage"))
        scope = bare_client.get("/drf/admin", headers=bearer(tokens.fresh()))
    assert (missing.status_code, missing.headers["WWW-Authenticate"]) == (401, 'Bearer realm="api"')
    assert set(missing.json()) == {"detail"}
    assert (garbage.status_code, garbage.headers["WWW-Authenticate"]) == (401, 'Bearer realm="api"')
    assert garbage.json() == {"detail": "The access token is malformed."}
    assert scope.status_code == 403
    assert "WWW-Authenticate" not in scope.headers
    assert scope.json() == {"detail": "The access token lacks the scope(s): admin."}


# --- configuration ---


def test_one_verifier_per_distinct_setting(server: Server) -> None:
    """The verifier is built once per setting: same setting, same object; another audience, another."""
    assert get_verifier() is get_verifier()
    first = get_verifier()
    with override_settings(KEYTURN={"ISSUER": server.url, "AUDIENCE": ["https://api.example"]}):
        other = get_verifier()
        assert other.audience == ("https://api.example",)
    assert other is not first
    assert get_verifier() is first


def test_audience_defaults_to_the_issuer(server: Server) -> None:
    """KEYTURN without AUDIENCE: the audience is the issuer (the server's own default)."""
    with override_settings(KEYTURN={"ISSUER": server.url, "SCOPES": "profile"}):
        assert config().audience == server.url
        assert config().scopes == ("profile",)


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        (None, "must be a dict"),
        ({}, "ISSUER"),
        ({"ISSUER": "auth.example.com"}, "ISSUER"),
        ({"ISSUER": "https://auth.example.com", "AUDIENCES": "x"}, "unknown keys: AUDIENCES"),
        ({"ISSUER": "https://auth.example.com", "LEEWAY": "5"}, "LEEWAY"),
        ({"ISSUER": "https://auth.example.com", "SCOPES": [1]}, "SCOPES"),
        ({"ISSUER": "https://auth.example.com", "REALM": 'a"b'}, "REALM"),
    ],
)
def test_bad_settings_are_refused_at_start_up(setting: object, complaint: str) -> None:
    """A broken KEYTURN setting stops the middleware from being built, naming the key."""
    with override_settings(KEYTURN=setting), pytest.raises(ImproperlyConfigured, match=complaint):
        KeyturnMiddleware(lambda request: None)


def test_decorator_without_parentheses_is_refused() -> None:
    """`@require_token` (no call) fails at import time with a clear TypeError."""
    with pytest.raises(TypeError, match="parentheses"):
        require_token(public)  # type: ignore[arg-type]  # the misuse under test
