"""The hot routes as plain Starlette endpoints, served ahead of the documented ones (issue 18).

``GET /v1/auth/me`` and ``POST /v1/auth/refresh`` are most of a server's traffic. FastAPI solves
every route's dependencies and validates every response on each request; here the same functions
run in FastAPI's order (the ceiling, then the route's own dependencies, then the body), and the
same models and responses come out. The documented routes stay in the router: they make the
OpenAPI document, and they answer whatever these do not take. A refresh here takes only a JSON
body that names a refresh token, with no cookie; anything else (browser mode, a body FastAPI would
refuse) goes to the documented route, untouched, before anything was counted or read.

Refusals are raised to the app's exception handlers, as from any route; a test pins every kind of
answer to the documented route's, byte for byte (``tests/server/http/test_hot.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from ...core.errors import InvalidRequest
from .body import parse_json_body
from .cookies import refresh_cookie
from .routes import bearer_scheme, browser, caller, ceiling, client, limits, router, service, whoami
from .schemas import RefreshRequest

__all__ = ["HOT_ROUTES"]


async def whoami_plain(request: Request) -> JSONResponse:
    """``GET /v1/auth/me``: the ceiling, the bearer token, the caller, the ``Me`` model."""
    await ceiling(request)
    me = await caller(request, await bearer_scheme(request))
    return JSONResponse((await whoami(me)).model_dump(mode="json"))


async def refresh_plain(request: Request) -> Response:
    """``POST /v1/auth/refresh`` with ``{"refresh_token": ...}`` in a JSON body and no cookie."""
    raw = await request.body()
    token = _body_token(request, raw)
    if token is None:
        return _Documented(_DOCUMENTED_REFRESH, raw)
    await ceiling(request)
    svc, who, lim = service(request), client(request), limits(request)
    presented = svc.auth.read_refresh_token(token)
    await lim.hit(lim.refresh_session, "refresh", str(presented.session_id))
    return browser(request).token_response(await svc.auth.refresh(presented, who), cookie=False)


def _body_token(request: Request, raw: bytes) -> str | None:
    """The refresh token of a body the documented route would take from the body, or None."""
    if request.headers.get("content-type") != "application/json" or refresh_cookie(request) is not None:
        return None
    if service(request).settings.cookie_mode == "always":
        return None
    try:
        body = RefreshRequest.model_validate(parse_json_body(raw))
    except (InvalidRequest, ValidationError):
        return None
    return body.refresh_token


class _Documented(Response):
    """Hands the request, its body replayed, to the documented route."""

    def __init__(self, route: Route, body: bytes) -> None:
        self.route, self.body = route, body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": self.body, "more_body": False}

        await self.route.handle(scope, replay, send)


def _plain(path: str, endpoint: Callable[[Request], Awaitable[Response]], method: str) -> Route:
    route = Route(path, endpoint, methods=[method])
    route.methods = {method}  # Starlette adds HEAD to a GET route; the documented route answers HEAD 405
    return route


_DOCUMENTED_REFRESH = next(r for r in router.routes if isinstance(r, Route) and r.path == "/v1/auth/refresh")
HOT_ROUTES = [_plain("/v1/auth/me", whoami_plain, "GET"), _plain("/v1/auth/refresh", refresh_plain, "POST")]
