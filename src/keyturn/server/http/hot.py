"""The hot routes, answered ahead of the framework (issue 18).

``GET /v1/auth/me`` and ``POST /v1/auth/refresh`` are most of a server's traffic. On their way
through the app a request passes five middleware layers of keyturn's, two of FastAPI's, the
router, and FastAPI's dependency solving and response validation, which together cost more than
the work itself. ``HotPath`` is the outermost of keyturn's middleware (inside only FastAPI's error,
telemetry and body-size layers): it answers the plain form of these two requests itself, and
hands everything else to the app untouched.

It takes a request only when none of the layers it passes over would act on it: no ``Cookie``
header (browser mode and the cookie filter), no ``Origin`` header when CORS is on, a header block
and a body within their bounds (``HeaderLimit``, ``BodyLimit``, whose own functions decide), and,
for a refresh, a JSON body naming a refresh token that the documented route would read from the
body. Then the endpoint below runs the same functions the route's dependencies are (the ceiling,
the bearer token, the caller), in FastAPI's order, with the same models; refusals are answered by
the app's own exception handlers, the response gets the same security headers
(``SecurityHeaders.headers_for``), and it is counted in the metrics as the metrics layer would
count it. A bug's exception goes on to Starlette's error middleware, as from any route.

The documented routes stay in the router: they make the OpenAPI document and answer everything
these do not take. ``tests/server/http/test_hot.py`` runs every kind of request on an app with and
without this layer and compares the answers byte for byte.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...core.errors import InvalidRequest
from .body import parse_json_body
from .middleware import HeaderLimit, SecurityHeaders, add_headers, declared_too_large, read_body, replay
from .routes import bearer_scheme, browser, caller, ceiling, client, limits, service, whoami
from .schemas import Me, RefreshRequest

if TYPE_CHECKING:
    from ..config import Settings
    from .metrics import Metrics

__all__ = ["HotPath", "refresh_plain", "whoami_plain"]

Endpoint = Callable[[Request, bytes], Awaitable[Response | None]]
_ME = TypeAdapter(Me)


async def whoami_plain(request: Request, _body: bytes) -> Response:
    """``GET /v1/auth/me``: the ceiling, the bearer token, the caller, the ``Me`` model."""
    await ceiling(request)
    me = await caller(request, await bearer_scheme(request))
    # As FastAPI serializes the route's return value when it sets no response class: the model's
    # JSON straight from pydantic.
    return Response(_ME.dump_json(await whoami(me), by_alias=True), media_type="application/json")


async def refresh_plain(request: Request, body: bytes) -> Response | None:
    """``POST /v1/auth/refresh`` with ``{"refresh_token": ...}`` in a JSON body; None (before
    anything was counted) for a body the documented route must answer."""
    token = _body_token(request, body)
    if token is None:
        return None
    await ceiling(request)
    svc, who, lim = service(request), client(request), limits(request)
    presented = svc.auth.read_refresh_token(token)
    await lim.hit(lim.refresh_session, "refresh", str(presented.session_id))
    return browser(request).token_response(await svc.auth.refresh(presented, who), cookie=False)


def _body_token(request: Request, raw: bytes) -> str | None:
    """The refresh token of a body the documented route would take from the body, or None."""
    if request.headers.get("content-type") != "application/json":
        return None
    if service(request).settings.cookie_mode == "always":
        return None
    try:
        body = RefreshRequest.model_validate(parse_json_body(raw))
    except (InvalidRequest, ValidationError):
        return None
    return body.refresh_token


_ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", "/v1/auth/me"): whoami_plain,
    ("POST", "/v1/auth/refresh"): refresh_plain,
}


class HotPath:
    """The outermost of keyturn's middleware (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, settings: Settings, metrics: Metrics | None) -> None:
        self.app = app
        self.metrics = metrics
        self.security = SecurityHeaders(app, hsts=settings.hsts)
        self.header_limit = HeaderLimit(app, max_bytes=settings.max_header_bytes, max_fields=settings.max_header_fields)
        self.body_limit = settings.max_body_bytes
        self.cors = bool(settings.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = _ENDPOINTS.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if endpoint is None or not self._plain(scope):
            await self.app(scope, receive, send)
            return
        read, complete = await read_body(receive, self.body_limit)
        replayed = replay(read, receive)
        if complete:
            request = Request(scope, replayed)
            scope["endpoint"] = endpoint  # for the metrics of refusals, as the router would set it
            if await self._answer(request, endpoint, b"".join(m.get("body", b"") for m in read), send):
                return
        await self.app(scope, replayed, send)

    def _plain(self, scope: Scope) -> bool:
        """Whether no layer this one passes over would act on the request."""
        for name, _ in scope["headers"]:
            if name == b"cookie" or (self.cors and name == b"origin"):
                return False
        return not (self.header_limit.too_large(scope) or declared_too_large(scope, self.body_limit))

    async def _answer(self, request: Request, endpoint: Endpoint, body: bytes, send: Send) -> bool:
        """Answer the request; False, with nothing sent or counted, when the endpoint does not take it."""
        scope, started, status = request.scope, time.perf_counter(), None
        headers = self.security.headers_for(scope["path"])

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                add_headers(message, headers)
            await send(message)

        taken = True
        try:
            try:
                response = await endpoint(request, body)
            except Exception as exc:
                response = await _handled(request, exc)
            if response is None:
                taken = False
                return False
            await response(scope, request.receive, send_with_headers)
        except Exception:
            status = 500 if status is None else status  # Starlette's error middleware answers it
            raise
        finally:
            if taken and self.metrics is not None:
                self.metrics.observe(scope["method"], scope["path"], status, time.perf_counter() - started)
        return True


async def _handled(request: Request, exc: Exception) -> Response | None:
    """The app's own answer to ``exc`` (its exception handlers, as FastAPI's exception middleware
    looks them up); a bug's exception is raised on."""
    handlers: dict[Any, Any] = request.app.exception_handlers
    for kind in type(exc).__mro__:
        handler = handlers.get(kind)
        if handler is not None and kind is not Exception:
            answer = handler(request, exc)
            return await answer if inspect.isawaitable(answer) else answer  # type: ignore[no-any-return]
    raise exc
