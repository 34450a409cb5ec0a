"""Unit tests of the Starlette adapter's ``KeyturnMiddleware``: in-process ASGI apps (httpx's
ASGITransport; websockets and lifespan driven by raw ASGI messages), tokens signed with a key made
here and verified against a static JWKS. No server, no network.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from starlette import authentication as starlette_auth
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from keyturn.core.errors import (
    InsufficientScope,
    KeyturnError,
    MalformedToken,
    MissingToken,
    TokenExpired,
    Unavailable,
)
from keyturn.core.keys import SigningKey, generate_key
from keyturn.core.tokens import issue_access_token
from keyturn.integrations.starlette import (
    KeyturnBackend,
    KeyturnMiddleware,
    KeyturnUser,
    _Refused,
    keyturn_middleware,
    on_error,
    requires,
)
from keyturn.verify import Verifier
from keyturn.verify.bearer import answer

pytestmark = pytest.mark.anyio

ISSUER = "https://auth.test"
NOW = datetime.now(UTC)
KEY = generate_key("ES256", now=NOW - timedelta(hours=2))


def mint(scope: str = "profile", *, key: SigningKey = KEY, now: datetime = NOW, subject: str = "user-1") -> str:
    token, _ = issue_access_token(
        key, issuer=ISSUER, audience=ISSUER, subject=subject, session_id="s", client_id="c", scope=scope,
        now=now, ttl=timedelta(minutes=15),
    )  # fmt: skip
    return token


def verifier(issuer: str = ISSUER) -> Verifier:
    return Verifier(issuer=issuer, audience=ISSUER, jwks={"keys": [KEY.public_jwk()]})


async def whoami(request: Request) -> JSONResponse:
    user: Any = request.user
    claims = {"sub": user.claims.sub, "scope": list(user.claims.scope)} if isinstance(user, KeyturnUser) else None
    return JSONResponse({"authenticated": user.is_authenticated, "scopes": request.auth.scopes, "claims": claims})


@requires("profile")
async def profile(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.user.claims.sub})


@requires("admin")
async def admin(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.user.claims.sub})


@requires("profile", "admin", "orders:write")
async def several(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.user.claims.sub})


@starlette_auth.requires("profile")
async def starlette_guarded(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.user.identity})


async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"user": websocket.user.display_name, "scopes": websocket.auth.scopes})
    await websocket.close()


ROUTES = [
    Route("/whoami", whoami),
    Route("/profile", profile),
    Route("/admin", admin),
    Route("/several", several),
    Route("/starlette", starlette_guarded),
    WebSocketRoute("/ws", socket),
]


def app(middleware: Middleware | None = None, **kwargs: Any) -> Starlette:
    return Starlette(routes=ROUTES, middleware=[middleware or keyturn_middleware(verifier())], **kwargs)


def legacy_app(issuer: str = ISSUER) -> Starlette:
    """The wiring the adapter shipped before: Starlette's AuthenticationMiddleware and our backend."""
    backend = KeyturnBackend(verifier(issuer))
    return app(Middleware(AuthenticationMiddleware, backend=backend, on_error=on_error))


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://api") as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_keyturn_middleware_installs_the_pure_asgi_middleware() -> None:
    """keyturn_middleware() is a Starlette Middleware for KeyturnMiddleware, not AuthenticationMiddleware."""
    entry = keyturn_middleware(verifier())
    assert cast(object, entry.cls) is KeyturnMiddleware
    assert isinstance(entry.kwargs["verifier"], Verifier)


async def test_no_header_is_anonymous(api: httpx.AsyncClient) -> None:
    """Without an Authorization header the request goes through with an unauthenticated user and no scopes."""
    response = await api.get("/whoami")
    assert response.status_code == 200
    assert response.json() == {"authenticated": False, "scopes": [], "claims": None}


async def test_no_header_on_a_guarded_route_is_401_in_keyturn_shape(api: httpx.AsyncClient) -> None:
    """Our requires() answers an anonymous request 401 with the bare challenge and keyturn's JSON body."""
    response = await api.get("/profile")
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token", "error_description": "This route needs a bearer access token."}
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    assert response.headers["cache-control"] == "no-store"


async def test_valid_token_sets_user_and_auth(api: httpx.AsyncClient) -> None:
    """A valid token: request.user is a KeyturnUser with the claims, request.auth.scopes the token's scopes."""
    response = await api.get("/whoami", headers=bearer(mint("profile orders:read")))
    assert response.status_code == 200
    assert response.json() == {
        "authenticated": True,
        "scopes": ["profile", "orders:read"],
        "claims": {"sub": "user-1", "scope": ["profile", "orders:read"]},
    }


async def test_valid_token_with_the_scope_reaches_a_guarded_route(api: httpx.AsyncClient) -> None:
    """requires("profile") lets a token carrying "profile" through to the endpoint."""
    response = await api.get("/profile", headers=bearer(mint("profile", subject="user-2")))
    assert response.status_code == 200
    assert response.json() == {"sub": "user-2"}


async def test_missing_scope_is_403_insufficient_scope(api: httpx.AsyncClient) -> None:
    """A valid token without the route's scope: 403 with error="insufficient_scope" and the scope named."""
    response = await api.get("/admin", headers=bearer(mint("profile")))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert response.headers["www-authenticate"] == 'Bearer realm="api", error="insufficient_scope", scope="admin"'


@pytest.mark.parametrize(("granted", "missing"), [("orders:write profile", "admin"), ("admin", "profile orders:write")])
async def test_each_missing_scope_is_named(api: httpx.AsyncClient, granted: str, missing: str) -> None:
    """requires() with several scopes: 403 naming every missing scope, in the route's order."""
    response = await api.get("/several", headers=bearer(mint(granted)))
    assert response.status_code == 403
    assert response.headers["www-authenticate"].endswith(f'error="insufficient_scope", scope="{missing}"')


async def test_all_required_scopes_let_the_request_through(api: httpx.AsyncClient) -> None:
    """requires() with several scopes: a token carrying all of them, in any order, reaches the endpoint."""
    response = await api.get("/several", headers=bearer(mint("admin orders:write profile")))
    assert response.status_code == 200


@pytest.mark.parametrize(
    "header", ["Bearer garbage", "Bearer a.b.c", "Bearer ", "Bearer", "Bearer a b", "Basic dXNlcjpwdw==", "", "Token x"]
)
async def test_malformed_headers_are_refused_401(api: httpx.AsyncClient, header: str) -> None:
    """Any Authorization header that does not hold a valid bearer token is refused, even on open routes."""
    response = await api.get("/whoami", headers={"authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="api"')
    assert set(response.json()) == {"error", "error_description"}


async def test_expired_token_is_401_invalid_token(api: httpx.AsyncClient) -> None:
    """A token whose exp has passed is refused with error="invalid_token"."""
    response = await api.get("/whoami", headers=bearer(mint(now=NOW - timedelta(hours=1))))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api", error="invalid_token"'


async def test_token_signed_by_another_key_is_401(api: httpx.AsyncClient) -> None:
    """Right issuer and audience, but signed by a key outside the JWKS: refused."""
    response = await api.get("/whoami", headers=bearer(mint(key=generate_key("ES256", now=NOW))))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def refusals() -> list[tuple[str, dict[str, str]]]:
    expired = mint(now=NOW - timedelta(hours=1))
    foreign = mint(key=generate_key("ES256", now=NOW))
    cases = ["", "Bearer", "Bearer ", "Bearer a b", "Basic dXNlcjpwdw==", "Bearer garbage", "Bearer a.b.c"]
    return [
        *((path, {"authorization": header}) for header in cases for path in ("/whoami", "/profile")),
        ("/whoami", bearer(expired)),
        ("/whoami", bearer(foreign)),
        ("/profile", {}),
        ("/admin", bearer(mint("profile"))),
    ]


@pytest.mark.parametrize(("path", "headers"), refusals())
async def test_refusals_match_the_authentication_middleware_wiring(path: str, headers: dict[str, str]) -> None:
    """Every refusal (status, headers, body) is byte for byte what the AuthenticationMiddleware wiring answers."""
    answers = []
    for asgi in (legacy_app(), app()):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://api") as client:
            response = await client.get(path, headers=headers)
        answers.append((response.status_code, response.headers.multi_items(), response.content))
    assert answers[0][0] in (401, 403)
    assert answers[1] == answers[0]


def reference(error: KeyturnError) -> tuple[int, list[tuple[str, str]], bytes]:
    """The answer as the adapter built it before, with Starlette's JSONResponse."""
    reply = answer(error, "api")
    response = JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)
    return response.status_code, [(k.decode(), v.decode()) for k, v in response.raw_headers], bytes(response.body)


@pytest.mark.parametrize(
    ("path", "token", "error"),
    [("/profile", None, MissingToken()), ("/admin", "profile", InsufficientScope(("admin",)))],
)
async def test_guard_answers_are_what_jsonresponse_rendered(
    api: httpx.AsyncClient, path: str, token: str | None, error: KeyturnError
) -> None:
    """requires() answers with the same status, headers and bytes as the JSONResponse it used to build."""
    response = await api.get(path, headers=bearer(mint(token)) if token else {})
    assert (response.status_code, response.headers.multi_items(), response.content) == reference(error)


@pytest.mark.parametrize("error", [MissingToken(), MalformedToken(), TokenExpired(NOW), Unavailable("ünïcode")])
def test_on_error_answers_what_jsonresponse_rendered(error: KeyturnError) -> None:
    """on_error(), for AuthenticationMiddleware users, still renders exactly the former JSONResponse."""
    response = on_error(HTTPConnection({"type": "http", "headers": []}), _Refused(error))
    rendered = [(k.decode(), v.decode()) for k, v in response.raw_headers]
    assert (response.status_code, rendered, response.body) == reference(error)


async def test_unreachable_jwks_is_503_like_the_authentication_middleware() -> None:
    """No keys could be fetched: 503 temporarily_unavailable with Retry-After, as before."""
    answers = []
    middlewares = (
        Middleware(AuthenticationMiddleware, backend=KeyturnBackend(Verifier("http://127.0.0.1:9", ISSUER)),
                   on_error=on_error),
        keyturn_middleware(Verifier("http://127.0.0.1:9", ISSUER)),
    )  # fmt: skip
    for middleware in middlewares:
        transport = httpx.ASGITransport(app=app(middleware))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            response = await client.get("/whoami", headers=bearer(mint()))
        answers.append((response.status_code, response.headers.multi_items(), response.content))
    assert answers[1][0] == 503
    assert ("retry-after", "1") in answers[1][1]
    assert answers[1] == answers[0]


async def test_starlettes_own_requires_reads_request_auth(api: httpx.AsyncClient) -> None:
    """starlette.authentication.requires sees the token's scopes in request.auth: 200 with, 403 without."""
    allowed = await api.get("/starlette", headers=bearer(mint("profile")))
    assert allowed.status_code == 200
    assert allowed.json() == {"sub": "user-1"}
    assert (await api.get("/starlette", headers=bearer(mint("admin")))).status_code == 403
    assert (await api.get("/starlette")).status_code == 403


async def converse(asgi: ASGIApp, scope: Scope, incoming: list[Message]) -> list[Message]:
    """Call ``asgi`` with ``scope``; it receives ``incoming`` in turn (then a disconnect). Returns what it sent."""
    sent: list[Message] = []
    queue = list(incoming)

    async def receive() -> Message:
        return queue.pop(0) if queue else {"type": f"{scope['type']}.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    await asgi(scope, receive, send)
    return sent


async def bare_middleware(headers: list[tuple[bytes, bytes]]) -> tuple[list[Message], Scope | None]:
    """KeyturnMiddleware alone over an app that records its scope: what it sent, and the scope passed on."""
    seen: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    sent = await converse(KeyturnMiddleware(inner, verifier()), scope, [])
    return sent, seen[0] if seen else None


async def test_header_name_is_matched_case_insensitively() -> None:
    """An ASGI server that does not lowercase header names still has its Authorization header checked."""
    _, scope = await bare_middleware([(b"Host", b"api"), (b"Authorization", f"Bearer {mint()}".encode())])
    assert scope is not None
    assert scope["user"].claims.sub == "user-1"
    sent, scope = await bare_middleware([(b"AUTHORIZATION", b"Bearer garbage")])
    assert scope is None
    assert sent[0]["status"] == 401


async def test_first_authorization_header_wins() -> None:
    """With two Authorization headers the first is the one verified, as Starlette's Headers.get reads it."""
    headers = [(b"authorization", b"Bearer garbage"), (b"authorization", f"Bearer {mint()}".encode())]
    sent, scope = await bare_middleware(headers)
    assert scope is None
    assert sent[0]["status"] == 401


def handshake(headers: dict[str, str]) -> Scope:
    raw = [(b"host", b"api"), *((k.encode(), v.encode()) for k, v in headers.items())]
    return {"type": "websocket", "scheme": "ws", "path": "/ws", "root_path": "", "query_string": b"",
            "headers": raw, "subprotocols": []}  # fmt: skip


async def test_websocket_with_a_valid_token_is_authenticated() -> None:
    """A websocket handshake with a valid token is accepted, and the endpoint sees the user and scopes."""
    sent = await converse(app(), handshake(bearer(mint("profile"))), [{"type": "websocket.connect"}])
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert json.loads(sent[1]["text"]) == {"user": "user-1", "scopes": ["profile"]}


async def test_websocket_without_a_token_is_anonymous() -> None:
    """A websocket handshake without an Authorization header goes through anonymous."""
    sent = await converse(app(), handshake({}), [{"type": "websocket.connect"}])
    assert sent[0]["type"] == "websocket.accept"
    assert json.loads(sent[1]["text"]) == {"user": "", "scopes": []}


@pytest.mark.parametrize("header", ["Bearer garbage", "Basic dXNlcjpwdw==", ""])
async def test_websocket_with_a_bad_token_is_closed_with_1000(header: str) -> None:
    """A refused websocket handshake is closed with code 1000 before accept, as AuthenticationMiddleware does."""
    scope = handshake({"authorization": header})
    sent = await converse(app(), dict(scope), [{"type": "websocket.connect"}])
    assert sent == [{"type": "websocket.close", "code": 1000}]
    assert sent == await converse(legacy_app(), dict(scope), [{"type": "websocket.connect"}])


async def test_lifespan_passes_through() -> None:
    """Startup and shutdown reach the app's lifespan through the middleware and are acknowledged."""
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    incoming: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = await converse(app(lifespan=lifespan), {"type": "lifespan", "state": {}}, incoming)
    assert events == ["startup", "shutdown"]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_lifespan_scope_is_handed_on_as_is() -> None:
    """A lifespan scope reaches the wrapped app unchanged: no auth or user keys are added."""
    seen: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(dict(scope))

    await converse(KeyturnMiddleware(inner, verifier()), {"type": "lifespan"}, [])
    assert seen == [{"type": "lifespan"}]


def test_public_names_are_sorted_and_exist() -> None:
    """The adapter's __all__ is sorted, names the new middleware, and every name in it exists."""
    from keyturn.integrations import starlette as adapter

    assert adapter.__all__ == sorted(adapter.__all__)
    assert "KeyturnMiddleware" in adapter.__all__
    assert all(hasattr(adapter, name) for name in adapter.__all__)
