"""FastAPI: a dependency that verifies the bearer token and returns its claims.

::

    from fastapi import Depends, FastAPI
    from keyturn.integrations.fastapi import require_token, setup
    from keyturn.verify import Verifier

    app = FastAPI()
    verifier = Verifier(issuer="https://auth.example.com", audience="https://api.example.com")
    setup(app, verifier, resource="https://api.example.com")

    @app.get("/orders")
    async def orders(claims=Depends(require_token(scopes=["orders:read"]))):
        return {"user": claims.sub}

Bad tokens get 401 with ``WWW-Authenticate: Bearer error="invalid_token"``, missing scopes 403
with ``error="insufficient_scope"``, both with keyturn's JSON error body. The route shows up in
the OpenAPI document with the bearer security scheme, whose header :class:`BearerToken` reads
with ``keyturn.verify.bearer`` (as the server and every other adapter do).

:func:`setup` also publishes the API's RFC 9728 metadata (``keyturn.verify.resource``): a GET
route at ``/.well-known/oauth-protected-resource`` (with the path of ``resource``, if any:
``https://example.com/api`` -> ``/.well-known/oauth-protected-resource/api``), left out of the
OpenAPI document, and its URL in every challenge
(``Bearer realm="api", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource"``),
so a refused client finds the issuer by itself. Without ``resource`` the identifier is each
request's ``https://<host>`` (``http`` on loopback; nothing is published for an app under a
``root_path``, whose well-known URL lies outside it); ``resource=False`` publishes nothing.
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
from ..verify.resource import ProtectedResource, protected_resource

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


def setup(
    app: FastAPI,
    verifier: Verifier,
    *,
    realm: str = "api",
    resource: str | ProtectedResource | bool | None = None,
) -> None:
    """Attach ``verifier`` to ``app``, answer keyturn errors in keyturn's JSON shape, and publish
    the API's RFC 9728 metadata.

    Args:
        app: the API.
        verifier: checks the tokens of :func:`require_token` routes.
        realm: named in ``WWW-Authenticate`` challenges.
        resource: the API's resource identifier (``"https://api.example.com"``), or a
            :class:`~keyturn.verify.ProtectedResource` with more members; default: derived from
            each request; ``False``: publish no metadata.

    Raises:
        ValueError: ``resource`` is not an https URL without query or fragment.
    """
    published = protected_resource(resource)
    setattr(app.state, _STATE, verifier)

    async def keyturn_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, KeyturnError)
        url = None if published is None else published.metadata_url(*_base(request))
        reply = answer(exc, realm, resource_metadata=url)
        return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)

    app.add_exception_handler(KeyturnError, keyturn_error)
    if published is not None:

        async def protected_resource_metadata(request: Request) -> JSONResponse:
            reply = published.answer(verifier.issuer, *_base(request))
            return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)

        app.add_api_route(published.path, protected_resource_metadata, methods=["GET"], include_in_schema=False)


def _base(request: Request) -> tuple[str, str, str]:
    """The request's scheme, ``Host`` and mount point (``root_path``)."""
    return request.url.scheme, request.headers.get("host", ""), request.scope.get("root_path", "")


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
