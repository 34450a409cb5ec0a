"""FastAPI: a dependency that verifies the bearer token and returns its claims.

::

    from fastapi import Depends, FastAPI
    from keyturn.integrations.fastapi import require_token, setup
    from keyturn.verify import Verifier

    app = FastAPI()
    setup(app, Verifier(issuer="https://auth.example.com", audience="https://api.example.com"))

    @app.get("/orders")
    async def orders(claims=Depends(require_token(scopes=["orders:read"]))):
        return {"user": claims.sub}

Bad tokens get 401 with ``WWW-Authenticate: Bearer error="invalid_token"``, missing scopes 403
with ``error="insufficient_scope"``, both with keyturn's JSON error body. The route shows up in
the OpenAPI document with the bearer security scheme, whose header :class:`BearerToken` reads
with ``keyturn.verify.bearer`` (as the server and every other adapter do).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import FastAPI, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from ..core.errors import KeyturnError, MissingToken
from ..core.tokens import AccessClaims
from ..verify import Verifier
from ..verify.bearer import answer, bearer_token

__all__ = ["BearerToken", "require_token", "setup"]

_STATE = "keyturn_verifier"


class BearerToken(HTTPBearer):
    """FastAPI's bearer security scheme (in the OpenAPI document), reading the header with
    :func:`keyturn.verify.bearer.bearer_token`, so FastAPI apps refuse headers as every keyturn edge does.

    No ``Authorization: Bearer`` header: ``None`` (or ``MissingToken`` with ``auto_error``).

    Raises:
        MalformedToken: ``Bearer`` with nothing usable after it.
    """

    async def __call__(self, request: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        try:
            token = bearer_token(request.headers.get("authorization"))
        except MissingToken:
            if self.auto_error:
                raise
            return None
        return HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)


_bearer = BearerToken(
    auto_error=False, scheme_name="keyturn", description="An access token issued by the keyturn server."
)


def setup(app: FastAPI, verifier: Verifier, *, realm: str = "api") -> None:
    """Attach ``verifier`` to ``app`` and answer keyturn errors in keyturn's JSON shape."""
    setattr(app.state, _STATE, verifier)

    async def keyturn_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, KeyturnError)
        reply = answer(exc, realm)
        return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)

    app.add_exception_handler(KeyturnError, keyturn_error)


def require_token(
    scopes: Sequence[str] = (), *, verifier: Verifier | None = None
) -> Callable[..., Awaitable[AccessClaims]]:
    """A dependency returning the verified claims; ``scopes`` must all be granted.

    Args:
        scopes: scopes this route needs (403 ``insufficient_scope`` when one is missing).
        verifier: the verifier to use; default: the one given to :func:`setup`.
    """
    wanted = tuple(scopes)

    async def verified(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
    ) -> AccessClaims:
        if credentials is None:
            raise MissingToken()
        chosen: Any = verifier or getattr(request.app.state, _STATE, None)
        if not isinstance(chosen, Verifier):
            raise RuntimeError("call keyturn.integrations.fastapi.setup(app, verifier) first")
        return await chosen.verify_async(credentials.credentials, scopes=wanted)

    return verified
