"""Starlette: a pure-ASGI authentication middleware, and a scope guard.

::

    from starlette.applications import Starlette
    from keyturn.integrations.starlette import keyturn_middleware, requires
    from keyturn.verify import Verifier

    verifier = Verifier(issuer="https://auth.example.com", audience="https://api.example.com")

    @requires("orders:read")
    async def orders(request):
        return JSONResponse({"user": request.user.claims.sub})

    app = Starlette(routes=[Route("/orders", orders)], middleware=[keyturn_middleware(verifier)])

``keyturn_middleware`` installs :class:`KeyturnMiddleware`, which sets ``scope["auth"]`` and
``scope["user"]`` as Starlette's ``AuthenticationMiddleware`` does (so ``request.user``,
``request.auth`` and ``starlette.authentication.requires`` work), without building a connection
object per request. Requests without an ``Authorization`` header go through anonymous; a header
that does not hold a valid bearer token is refused with keyturn's JSON error answer (401
``invalid_token``; 503 while the issuer's keys cannot be fetched), and a websocket handshake is
closed with code 1000, as Starlette closes it. To wire ``AuthenticationMiddleware`` yourself, pass
it ``backend=KeyturnBackend(verifier), on_error=on_error`` (that wiring publishes no metadata).

The middleware also publishes the API's RFC 9728 metadata (``keyturn.verify.resource``):
``keyturn_middleware(verifier, resource="https://api.example.com")`` answers GET
``/.well-known/oauth-protected-resource`` (with the path of ``resource``, if any:
``https://example.com/api`` -> ``/.well-known/oauth-protected-resource/api``) itself, with no token
needed, and names that URL in every challenge, its own and :func:`requires`'
(``Bearer realm="api", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource"``).
Without ``resource`` the identifier is each request's ``https://<host>`` (``http`` on loopback;
nothing is published for an app under a ``root_path``, whose well-known URL lies outside it);
``resource=False`` publishes nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
    UnauthenticatedUser,
)
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.errors import InsufficientScope, KeyturnError, MissingToken
from ..core.tokens import AccessClaims
from ..verify import Verifier
from ..verify.bearer import answer, bearer_token
from ..verify.resource import ProtectedResource, protected_resource

__all__ = ["KeyturnBackend", "KeyturnMiddleware", "KeyturnUser", "keyturn_middleware", "on_error", "requires"]

Endpoint = Callable[[Request], Awaitable[Response]]

# JSONResponse's rendering; one encoder, as json.dumps builds a new one per call when given options.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
# Where KeyturnMiddleware leaves its ProtectedResource in the scope, for requires() to name its URL.
_RESOURCE = "keyturn.resource"


class KeyturnUser(BaseUser):
    """``request.user`` for a verified token; ``claims`` holds everything it says."""

    def __init__(self, claims: AccessClaims) -> None:
        self.claims = claims

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.claims.sub

    @property
    def identity(self) -> str:
        return self.claims.sub


class KeyturnMiddleware:
    """Authenticates ``Authorization: Bearer`` tokens; requests without the header stay anonymous.

    A pure-ASGI equivalent of ``AuthenticationMiddleware(backend=KeyturnBackend(verifier),
    on_error=on_error)``: same ``scope["auth"]`` / ``scope["user"]``, same refusals, byte for byte.
    Lifespan and other scope types pass through untouched.

    Args:
        app: the ASGI app to protect.
        verifier: checks the tokens (offline, with its cache of verified tokens).
        resource: the API's resource identifier (``"https://api.example.com"``), or a
            :class:`~keyturn.verify.ProtectedResource`; default: derived from each request;
            ``False``: publish no metadata.

    Raises:
        ValueError: ``resource`` is not an https URL without query or fragment.
    """

    def __init__(
        self, app: ASGIApp, verifier: Verifier, *, resource: str | ProtectedResource | bool | None = None
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.resource = protected_resource(resource)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        resource = self.resource
        if resource is not None:
            scope[_RESOURCE] = resource
            if scope["path"] == resource.path and kind == "http" and scope["method"] in ("GET", "HEAD"):
                reply = resource.answer(self.verifier.issuer, *_base(scope))
                await _render(reply.body, reply.status, reply.headers)(scope, receive, send)
                return
        header = _authorization(scope["headers"])
        if header is None:
            scope["auth"] = AuthCredentials()
            scope["user"] = UnauthenticatedUser()
        else:
            try:
                claims = await self.verifier.verify_async(bearer_token(header))
            except KeyturnError as exc:
                if kind == "websocket":
                    await send({"type": "websocket.close", "code": 1000})
                else:
                    await _json(exc, scope)(scope, receive, send)
                return
            scope["auth"] = AuthCredentials(claims.scope)  # it copies the scopes into a list of its own
            scope["user"] = KeyturnUser(claims)
        await self.app(scope, receive, send)


class _Refused(AuthenticationError):
    def __init__(self, error: KeyturnError) -> None:
        super().__init__(error.description)
        self.error = error


class KeyturnBackend(AuthenticationBackend):
    """Verifies ``Authorization: Bearer`` tokens for ``AuthenticationMiddleware``; no header: anonymous."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = conn.headers.get("authorization")
        if header is None:
            return None
        try:
            claims = await self.verifier.verify_async(bearer_token(header))
        except KeyturnError as exc:
            raise _Refused(exc) from None
        return AuthCredentials(list(claims.scope)), KeyturnUser(claims)


def on_error(conn: HTTPConnection, exc: Exception) -> Response:
    """The JSON answer for a refused token (pass as ``AuthenticationMiddleware(on_error=...)``)."""
    error = exc.error if isinstance(exc, _Refused) else MissingToken()
    return _json(error, conn.scope)


def keyturn_middleware(verifier: Verifier, *, resource: str | ProtectedResource | bool | None = None) -> Middleware:
    """:class:`KeyturnMiddleware` for ``Starlette(middleware=[...])``; ``resource`` as there.

    Raises:
        ValueError: ``resource`` is not an https URL without query or fragment (checked here, not
            when Starlette builds its middleware on the first request).
    """
    return Middleware(KeyturnMiddleware, verifier=verifier, resource=protected_resource(resource) or False)


def requires(*scopes: str) -> Callable[[Endpoint], Endpoint]:
    """Guard an endpoint: 401 without a token, 403 ``insufficient_scope`` without every scope."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            user: Any = request.user
            if not isinstance(user, KeyturnUser):
                return _json(MissingToken(), request.scope)
            try:
                user.claims.require(scopes)
            except InsufficientScope as exc:
                return _json(exc, request.scope)
            return await endpoint(request)

        return guarded

    return decorate


def _authorization(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    # The first Authorization header, decoded as Starlette's Headers decode it. ASGI servers send
    # names lowercased; the length test keeps the case-insensitive fallback off the common path.
    for name, value in headers:
        if name == b"authorization" or (len(name) == 13 and name.lower() == b"authorization"):
            return value.decode("latin-1")
    return None


def _json(error: KeyturnError, scope: Scope) -> Response:
    # keyturn's answer, naming the metadata URL when KeyturnMiddleware publishes one.
    resource: ProtectedResource | None = scope.get(_RESOURCE)
    url = None if resource is None else resource.metadata_url(*_base(scope))
    reply = answer(error, "api", resource_metadata=url)
    return _render(reply.body, reply.status, reply.headers)


def _render(body: dict[str, Any], status: int, headers: dict[str, str]) -> Response:
    # A JSONResponse, rendered with the shared encoder.
    return Response(_ENCODER.encode(body).encode(), status, headers, "application/json")


def _base(scope: Scope) -> tuple[str, str, str]:
    # The request's scheme, Host header (as Starlette's URL reads it) and mount point.
    host = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"host"), "")
    return scope.get("scheme", "http"), host, scope.get("root_path", "")
