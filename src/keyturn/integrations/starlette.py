"""Starlette: an ``AuthenticationBackend`` for ``AuthenticationMiddleware``, and a scope guard.

::

    from starlette.applications import Starlette
    from keyturn.integrations.starlette import keyturn_middleware, requires
    from keyturn.verify import Verifier

    verifier = Verifier(issuer="https://auth.example.com", audience="https://api.example.com")

    @requires("orders:read")
    async def orders(request):
        return JSONResponse({"user": request.user.claims.sub})

    app = Starlette(routes=[Route("/orders", orders)], middleware=[keyturn_middleware(verifier)])
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, BaseUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from ..errors import InsufficientScope, KeyturnError, MissingToken
from ..responses import answer
from ..tokens import AccessClaims
from ..verify import Verifier
from ._common import bearer_token

__all__ = ["KeyturnBackend", "KeyturnUser", "keyturn_middleware", "on_error", "requires"]

Endpoint = Callable[[Request], Awaitable[Response]]


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


class _Refused(AuthenticationError):
    def __init__(self, error: KeyturnError) -> None:
        super().__init__(error.description)
        self.error = error


class KeyturnBackend(AuthenticationBackend):
    """Verifies ``Authorization: Bearer`` tokens; requests without one stay anonymous."""

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


def on_error(_conn: HTTPConnection, exc: Exception) -> Response:
    """The JSON answer for a refused token (pass as ``AuthenticationMiddleware(on_error=...)``)."""
    error = exc.error if isinstance(exc, _Refused) else MissingToken()
    return _json(error)


def keyturn_middleware(verifier: Verifier) -> Middleware:
    """``AuthenticationMiddleware`` wired to keyturn's backend and error answers."""
    return Middleware(AuthenticationMiddleware, backend=KeyturnBackend(verifier), on_error=on_error)


def requires(*scopes: str) -> Callable[[Endpoint], Endpoint]:
    """Guard an endpoint: 401 without a token, 403 ``insufficient_scope`` without every scope."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            user: Any = request.user
            if not isinstance(user, KeyturnUser):
                return _json(MissingToken())
            missing = tuple(s for s in scopes if s not in user.claims.scope)
            if missing:
                return _json(InsufficientScope(missing))
            return await endpoint(request)

        return guarded

    return decorate


def _json(error: KeyturnError) -> JSONResponse:
    reply = answer(error, "api")
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)
