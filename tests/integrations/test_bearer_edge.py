"""Tests that every edge reads the ``Authorization`` header with ``keyturn.verify.bearer`` and answers
a refusal the same way: the FastAPI, Starlette and Flask adapters (unit tests, in-process apps over a
static JWKS) and the server's own routes (integration, the real ASGI app on a real database).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keyturn.core.errors import KeyturnError, MalformedToken, MissingToken
from keyturn.core.keys import generate_key
from keyturn.core.tokens import AccessClaims, issue_access_token
from keyturn.integrations import fastapi as kt_fastapi
from keyturn.integrations import flask as kt_flask
from keyturn.integrations import starlette as kt_starlette
from keyturn.verify import Verifier
from keyturn.verify.bearer import answer

pytestmark = pytest.mark.anyio

ISSUER = "https://auth.test"
NOW = datetime.now(UTC)
KEY = generate_key("ES256", now=NOW - timedelta(hours=1))
HEADERS = [
    ("", MissingToken()),
    ("Basic dXNlcjpwdw==", MissingToken()),
    ("Token abc", MissingToken()),
    ("Bearer", MalformedToken()),
    ("Bearer ", MalformedToken()),
    ("Bearer a b", MalformedToken()),
]
Seen = tuple[int, str | None, Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def verifier() -> Verifier:
    return Verifier(ISSUER, ISSUER, jwks={"keys": [KEY.public_jwk()]})


def mint() -> str:
    token, _ = issue_access_token(
        KEY, issuer=ISSUER, audience=ISSUER, subject="user-1", session_id="s", client_id="c", scope="profile",
        now=NOW, ttl=timedelta(minutes=15),
    )  # fmt: skip
    return token


def expected(error: KeyturnError, realm: str) -> Seen:
    reply = answer(error, realm)
    return reply.status, reply.headers.get("WWW-Authenticate"), reply.body


def fastapi_app(scheme: kt_fastapi.BearerToken | None = None) -> FastAPI:
    app = FastAPI()
    kt_fastapi.setup(app, verifier())
    guard = kt_fastapi.require_token()

    @app.get("/profile")
    async def profile(claims: AccessClaims = Depends(guard)) -> dict[str, str]:  # noqa: B008
        return {"sub": claims.sub}

    if scheme is not None:

        @app.get("/strict")
        async def strict(credentials: Any = Depends(scheme)) -> dict[str, str]:  # noqa: B008
            return {"token": credentials.credentials}

    return app


def starlette_app() -> Starlette:
    async def profile(request: Request) -> JSONResponse:
        return JSONResponse({"sub": request.user.claims.sub})

    routes = [Route("/profile", kt_starlette.requires()(profile))]
    return Starlette(routes=routes, middleware=[kt_starlette.keyturn_middleware(verifier())])


async def asgi_get(app: Any, headers: dict[str, str], path: str = "/profile") -> Seen:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        response = await client.get(path, headers=headers)
    return response.status_code, response.headers.get("www-authenticate"), response.json()


def flask_get(headers: dict[str, str]) -> Seen:
    app = Flask(__name__)
    kt_flask.Keyturn(app, verifier())

    @app.get("/profile")
    @kt_flask.require_token()
    def profile() -> dict[str, str]:
        return {"sub": kt_flask.current_claims().sub}

    response = app.test_client().get("/profile", headers=headers, base_url="http://api")  # as asgi_get()
    return response.status_code, response.headers.get("WWW-Authenticate"), response.get_json()


ADAPTERS: dict[str, Callable[[dict[str, str]], Any]] = {
    "fastapi": lambda headers: asgi_get(fastapi_app(), headers),
    "starlette": lambda headers: asgi_get(starlette_app(), headers),
}


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
@pytest.mark.parametrize(("header", "error"), HEADERS)
async def test_asgi_adapters_refuse_each_header_as_bearer_token_reads_it(
    adapter: str, header: str, error: KeyturnError
) -> None:
    """FastAPI and Starlette: no bearer header is missing_token (bare challenge), an empty or two-word
    one malformed (error="invalid_token"), with keyturn's body, as bearer_token() and answer() say."""
    assert await ADAPTERS[adapter]({"authorization": header}) == expected(error, "api")


@pytest.mark.parametrize(("header", "error"), HEADERS)
def test_flask_refuses_each_header_as_bearer_token_reads_it(header: str, error: KeyturnError) -> None:
    """Flask answers every header case exactly as the ASGI adapters do."""
    assert flask_get({"Authorization": header}) == expected(error, "api")


@pytest.mark.parametrize("header", ["Bearer {}", "bearer  {} "])
async def test_every_adapter_accepts_what_bearer_token_accepts(header: str) -> None:
    """A case-insensitive scheme and spaces around the token are fine everywhere."""
    headers = {"authorization": header.format(mint())}
    ok = (200, None, {"sub": "user-1"})
    assert await asgi_get(fastapi_app(), headers) == ok
    assert await asgi_get(starlette_app(), headers) == ok
    assert flask_get(headers) == ok


async def test_fastapi_keeps_the_bearer_scheme_in_the_openapi_document() -> None:
    """BearerToken is still FastAPI's HTTP bearer scheme: the route is documented as needing it."""
    document = fastapi_app().openapi()
    assert document["components"]["securitySchemes"]["keyturn"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token issued by the keyturn server.",
    }
    assert document["paths"]["/profile"]["get"]["security"] == [{"keyturn": []}]


@pytest.mark.parametrize(("header", "error"), [(None, MissingToken()), ("Basic x", MissingToken())])
async def test_bearer_token_scheme_with_auto_error_refuses_a_missing_token(
    header: str | None, error: KeyturnError
) -> None:
    """BearerToken(auto_error=True) raises MissingToken (keyturn's 401), not FastAPI's own 403."""
    app = fastapi_app(kt_fastapi.BearerToken())
    assert await asgi_get(app, {} if header is None else {"authorization": header}, "/strict") == expected(error, "api")
    token = mint()
    assert await asgi_get(app, {"authorization": f"Bearer {token}"}, "/strict") == (200, None, {"token": token})


@pytest.mark.parametrize(("header", "error"), HEADERS)
async def test_the_server_refuses_each_header_as_the_adapters_do(
    client: httpx.AsyncClient, header: str, error: KeyturnError
) -> None:
    """The server's routes read the header with bearer_token() too (realm "keyturn")."""
    response = await client.get("/v1/auth/me", headers={"authorization": header})
    seen = (response.status_code, response.headers.get("www-authenticate"), response.json())
    assert seen == expected(error, "keyturn")
