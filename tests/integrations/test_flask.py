"""Integration tests of keyturn.integrations.flask: a real Flask app (test client) verifying tokens
against the JWKS of a real keyturn server process on loopback.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask, g
from flask.testing import FlaskClient

from keyturn.integrations.flask import Keyturn, current_claims, require_token
from keyturn.verify import Verifier
from tests.integrations.tokens import Tokens, bearer
from tests.servers import Server, free_port

pytestmark = pytest.mark.server


def make_app(verifier: Verifier, *, factory: bool = False) -> Flask:
    app = Flask(__name__)
    # Served as http://api, as the ASGI apps of these tests are: neither https nor loopback, so no
    # RFC 9728 metadata URL is derived and challenges stay bare (test_resource_metadata.py pins that).
    app.config["SERVER_NAME"] = "api"
    if factory:
        keyturn = Keyturn()
        keyturn.init_app(app, verifier)
    else:
        Keyturn(app, verifier)

    @app.get("/claims")
    @require_token()
    def claims() -> dict[str, Any]:
        return {"sub": current_claims().sub, "scope": list(g.keyturn_claims.scope)}

    @app.get("/profile")
    @require_token(scopes=["profile"])
    def profile() -> dict[str, Any]:
        return {"sub": current_claims().sub}

    @app.get("/admin")
    @require_token(scopes="admin")
    def admin() -> dict[str, Any]:
        return {"sub": current_claims().sub}

    @app.get("/async")
    @require_token()
    async def in_async_view() -> dict[str, Any]:
        return {"sub": current_claims().sub}

    @app.get("/unguarded")
    def unguarded() -> dict[str, Any]:
        return {"sub": current_claims().sub}

    return app


@pytest.fixture(scope="module")
def client(server: Server) -> FlaskClient:
    return make_app(Verifier(issuer=server.url, audience=server.url)).test_client()


def assert_refused(response: Any, status: int, error: str) -> dict[str, Any]:
    body: dict[str, Any] = response.get_json()
    assert response.status_code == status
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert response.headers["Cache-Control"] == "no-store"
    return body


def test_valid_token_reaches_the_view_with_its_claims(client: FlaskClient, tokens: Tokens) -> None:
    """A real token from the server → 200, and the view sees its sub and scope."""
    response = client.get("/claims", headers=bearer(tokens.fresh()))
    assert response.status_code == 200
    assert response.get_json() == {"sub": tokens.sub, "scope": ["profile"]}


def test_missing_header_is_401_with_a_bare_bearer_challenge(client: FlaskClient) -> None:
    """No Authorization header → 401, `WWW-Authenticate: Bearer realm="api"` naming no error (RFC 6750 §3.1)."""
    response = client.get("/claims")
    assert_refused(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_other_scheme_counts_as_no_token(client: FlaskClient) -> None:
    """`Authorization: Basic ...` → the same 401 as no header."""
    response = client.get("/claims", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_refused(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "Bearer"])
def test_garbage_token_is_401_invalid_token(client: FlaskClient, token: str) -> None:
    """Garbage after `Bearer ` → 401 with `error="invalid_token"` and keyturn's JSON body."""
    response = client.get("/claims", headers=bearer(token))
    assert_refused(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'


def test_tampered_token_is_401(client: FlaskClient, tokens: Tokens) -> None:
    """A real token whose payload was edited to add "admin" → 401, bad signature."""
    body = assert_refused(client.get("/admin", headers=bearer(tokens.tampered())), 401, "invalid_token")
    assert "signature" in body["error_description"]


def test_expired_token_is_401(server: Server, tokens: Tokens) -> None:
    """A real token past its `exp` (no leeway) → 401 saying it expired; set up with the app factory pattern."""
    strict = make_app(Verifier(issuer=server.url, audience=server.url, leeway=timedelta(0)), factory=True)
    response = strict.test_client().get("/claims", headers=bearer(tokens.expired()))
    body = assert_refused(response, 401, "invalid_token")
    assert "expired" in body["error_description"]


def test_missing_scope_is_403_insufficient_scope(client: FlaskClient, tokens: Tokens) -> None:
    """A valid "profile" token on a route needing "admin" → 403 naming the missing scope."""
    response = client.get("/admin", headers=bearer(tokens.fresh()))
    assert_refused(response, 403, "insufficient_scope")
    challenge = 'Bearer realm="api", error="insufficient_scope", scope="admin"'
    assert response.headers["WWW-Authenticate"] == challenge


def test_granted_scope_is_200(client: FlaskClient, tokens: Tokens) -> None:
    """A valid "profile" token on a route needing "profile" → 200."""
    response = client.get("/profile", headers=bearer(tokens.fresh()))
    assert response.status_code == 200
    assert response.get_json() == {"sub": tokens.sub}


def test_token_signed_by_another_instance_is_401(client: FlaskClient, tokens: Tokens) -> None:
    """A token for this issuer signed with a key the server never published → 401."""
    body = assert_refused(client.get("/claims", headers=bearer(tokens.foreign())), 401, "invalid_token")
    assert "unknown key" in body["error_description"]


def test_async_view_is_guarded_too(client: FlaskClient, tokens: Tokens) -> None:
    """`async def` views: 401 without a token, 200 with one."""
    assert client.get("/async").status_code == 401
    response = client.get("/async", headers=bearer(tokens.fresh()))
    assert response.status_code == 200
    assert response.get_json() == {"sub": tokens.sub}


def test_current_claims_without_the_decorator_is_401(client: FlaskClient, tokens: Tokens) -> None:
    """`current_claims()` in an unguarded view refuses (401) instead of returning nothing."""
    assert_refused(client.get("/unguarded", headers=bearer(tokens.fresh())), 401, "invalid_token")


def test_unreachable_keys_are_503_with_retry_after(tokens: Tokens) -> None:
    """A verifier whose issuer does not answer → 503 temporarily_unavailable with Retry-After."""
    dead = f"http://127.0.0.1:{free_port()}"
    app = make_app(Verifier(issuer=dead, audience=dead))
    response = app.test_client().get("/claims", headers=bearer(tokens.fresh()))
    assert_refused(response, 503, "temporarily_unavailable")
    assert response.headers["Retry-After"] == "1"


def test_decorator_without_parentheses_is_refused() -> None:
    """`@require_token` (no call) fails at import time with a clear TypeError, not at request time."""
    with pytest.raises(TypeError, match="parentheses"):
        require_token(lambda: None)  # type: ignore[arg-type]


def test_init_app_without_a_verifier_is_refused() -> None:
    """`Keyturn().init_app(app)` with no verifier anywhere → TypeError."""
    with pytest.raises(TypeError, match="Verifier"):
        Keyturn().init_app(Flask(__name__))
