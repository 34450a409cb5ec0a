"""Integration tests of the FastAPI and Starlette adapters: real apps, tokens and JWKS from a real
keyturn server process on loopback.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.routing import Route

from keyturn.core.keys import generate_key
from keyturn.core.tokens import AccessClaims, issue_access_token
from keyturn.integrations.fastapi import require_token, setup
from keyturn.integrations.starlette import keyturn_middleware
from keyturn.verify import JwksPolicy, Verifier
from tests.integrations import test_starlette as starlette_endpoints
from tests.servers import Server, keyturn_fixture

pytestmark = [pytest.mark.server, pytest.mark.anyio]

PASSWORD = "correct horse battery staple"


server = keyturn_fixture("--dev")


@pytest.fixture(scope="module")
def tokens(server: Server) -> dict[str, Any]:
    creds = {"username": "api-user", "password": PASSWORD}
    httpx.post(f"{server.url}/v1/auth/register", json=creds)
    response = httpx.post(f"{server.url}/v1/auth/login", json=creds)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def fastapi_app(server: Server) -> FastAPI:
    app = FastAPI()
    setup(app, Verifier(issuer=server.url, audience=server.url))

    @app.get("/public")
    async def public() -> dict[str, str]:
        return {"hello": "world"}

    @app.get("/profile")
    async def profile(claims: AccessClaims = Depends(require_token(scopes=["profile"]))) -> dict[str, str]:  # noqa: B008
        return {"sub": claims.sub, "scope": " ".join(claims.scope)}

    @app.get("/admin")
    async def admin(claims: AccessClaims = Depends(require_token(scopes=["admin"]))) -> dict[str, str]:  # noqa: B008
        return {"sub": claims.sub}

    return app


def starlette_app(server: Server) -> Starlette:
    verifier = Verifier(issuer=server.url, audience=server.url)
    routes = [Route("/profile", starlette_endpoints.profile), Route("/admin", starlette_endpoints.admin)]
    return Starlette(routes=routes, middleware=[keyturn_middleware(verifier)])


@pytest.fixture(params=["fastapi", "starlette"])
async def api(request: pytest.FixtureRequest, server: Server) -> Any:
    app = fastapi_app(server) if request.param == "fastapi" else starlette_app(server)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_valid_token_reaches_the_route(api: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    """A keyturn access token with the scope gets through; the claims are the caller's."""
    response = await api.get("/profile", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.json()["sub"]


async def test_missing_token_is_401_with_a_bare_challenge(api: httpx.AsyncClient) -> None:
    """No Authorization header: 401, WWW-Authenticate names the realm, no error code (RFC 6750 §3.1)."""
    response = await api.get("/profile")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    assert response.json()["error"] == "invalid_token"


@pytest.mark.parametrize("header", ["Bearer garbage", "Bearer a.b.c", "Basic dXNlcjpwdw==x", "Bearer "])
async def test_bad_tokens_are_401_invalid_token(api: httpx.AsyncClient, header: str) -> None:
    """Malformed or foreign credentials: 401 in keyturn's JSON shape."""
    response = await api.get("/profile", headers={"authorization": header})
    assert response.status_code == 401
    assert set(response.json()) == {"error", "error_description"}


async def test_tampered_token_is_401(api: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    """Changing a character of the signature breaks it."""
    tampered = tokens["access_token"][:-3] + ("AAA" if not tokens["access_token"].endswith("AAA") else "BBB")
    response = await api.get("/profile", headers=bearer(tampered))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_missing_scope_is_403_insufficient_scope(api: httpx.AsyncClient, tokens: dict[str, Any]) -> None:
    """A valid token without the route's scope: 403 with error="insufficient_scope" (RFC 6750 §3.1)."""
    response = await api.get("/admin", headers=bearer(tokens["access_token"]))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert 'scope="admin"' in response.headers["www-authenticate"]


async def test_token_of_another_keyturn_instance_is_refused(api: httpx.AsyncClient, server: Server) -> None:
    """Same issuer name, another instance's key: 401."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    forged, _ = issue_access_token(
        generate_key("ES256", now=now), issuer=server.url, audience=server.url, subject="x", session_id="s",
        client_id="keyturn", scope="profile admin", now=now, ttl=timedelta(minutes=5),
    )  # fmt: skip
    response = await api.get("/profile", headers=bearer(forged))
    assert response.status_code == 401


def test_openapi_shows_the_bearer_scheme(server: Server) -> None:
    """FastAPI: the protected routes carry the security requirement in OpenAPI."""
    spec = fastapi_app(server).openapi()
    assert spec["components"]["securitySchemes"]["keyturn"]["scheme"] == "bearer"
    assert spec["paths"]["/profile"]["get"]["security"] == [{"keyturn": []}]
    assert "security" not in spec["paths"]["/public"]["get"]


def test_key_rotation_does_not_break_a_running_resource_server(server: Server, tokens: dict[str, Any]) -> None:
    """After `keyturn keys rotate --delay 0`, new tokens (new kid) verify on a verifier that cached the old keys."""
    import os
    import subprocess
    import time

    from tests.servers import KEYTURN

    # Rotating with no publish delay is the hard case: the verifier learns the key from the token's kid.
    verifier = Verifier(server.url, server.url, policy=JwksPolicy(unknown_kid_interval=timedelta(seconds=1)))
    old = verifier.verify(tokens["access_token"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    env["KEYTURN_ISSUER"] = server.url
    subprocess.run([str(KEYTURN), "--dev", "keys", "rotate", "--delay", "0"], cwd=server.cwd, env=env, check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    creds = {"username": "api-user", "password": PASSWORD}
    old_header = tokens["access_token"].split(".")[0]
    for _ in range(40):  # the server reloads its key ring every 5 s
        fresh = httpx.post(f"{server.url}/v1/auth/login", json=creds).json()["access_token"]
        if fresh.split(".")[0] != old_header:
            break
        time.sleep(0.25)
    assert fresh.split(".")[0] != old_header  # signed by the new key
    time.sleep(1)
    assert verifier.verify(fresh).sub == old.sub
    assert verifier.verify(tokens["access_token"]).sub == old.sub  # the old key is still published
