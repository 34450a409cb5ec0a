"""The standard OAuth 2.0 endpoints, for clients nobody here wrote: the RFC 6749 token endpoint
(``grant_type=refresh_token``) and RFC 7009 revocation, both taking form bodies.

They carry out the same use cases as the first-party JSON API (the same rotation, grace and reuse
rules, the same audit rows, the same revocation feed), and never read the browser's refresh
cookie: the JSON API's CSRF defence rests on JSON bodies, which a cross-site form cannot send, so
a form endpoint must not act on ambient credentials. Clients are public (the first-party
``client_id``, ``token_endpoint_auth_method=none``): a request that authenticates as a client,
or names another ``client_id``, is refused with ``invalid_client``.

Errors follow RFC 6749 §5.2: 400 for ``invalid_request``, ``invalid_grant``,
``unsupported_grant_type`` and ``invalid_scope``; 401 ``invalid_client``, with a ``Basic``
challenge (RFC 9110 §15.5.2: every 401 names one).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ...core.errors import InvalidClient, InvalidGrant, InvalidRequest, KeyturnError, UnsupportedGrantType
from ...core.tokens import scope_names
from ...verify.bearer import NO_STORE, answer
from ..service import Client, Service
from .form import FORM, parse_form
from .ratelimit import RateLimits
from .routes import ceiling, client, limits, service

__all__ = ["router"]

router = APIRouter(prefix="/oauth", tags=["oauth"])
_FORM_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {FORM: {"schema": {"type": "object"}}}},
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "`invalid_request`, `invalid_grant`, `unsupported_grant_type`, `invalid_scope`"},
    401: {"description": "`invalid_client`"},
    503: {"description": "Store unavailable (`temporarily_unavailable`); nothing was issued"},
}


@router.post("/token", openapi_extra=_FORM_BODY, responses=_ERRORS)
async def token(request: Request) -> Response:
    """RFC 6749 token endpoint: `grant_type=refresh_token` with `refresh_token` (and optionally
    `scope`, a part of the grant), from a public client. Rotation, grace and reuse detection as on
    `/v1/auth/refresh`."""
    try:
        await ceiling(request)
        form = await _form(request)
        svc, who = service(request), client(request)
        _public_client(request, form, svc)
        grant = form.get("grant_type")
        if not grant:
            raise InvalidRequest("The parameter 'grant_type' is required.")
        if grant != "refresh_token":
            raise UnsupportedGrantType(f"The grant type '{grant[:64]}' is not supported; use refresh_token.")
        pair = await _refresh(svc, limits(request), who, form)
    except KeyturnError as exc:
        return _refusal(exc)
    body = {
        "access_token": pair.access_token, "token_type": pair.token_type, "expires_in": pair.expires_in,
        "refresh_token": pair.refresh_token, "refresh_token_expires_in": pair.refresh_token_expires_in,
        "scope": pair.scope, "session_id": pair.session_id,
    }  # fmt: skip
    return JSONResponse(body, headers=NO_STORE)


@router.post("/revoke", openapi_extra=_FORM_BODY, responses=_ERRORS)
async def revoke(request: Request) -> Response:
    """RFC 7009 revocation: `token` (a refresh token or an access token; `token_type_hint` says
    which to try first) ends its session. 200 whether or not the token was valid."""
    try:
        await ceiling(request)
        form = await _form(request)
        svc = service(request)
        _public_client(request, form, svc)
        token_value = form.get("token")
        if not token_value:
            raise InvalidRequest("The parameter 'token' is required.")
        await svc.auth.revoke_token(token_value, form.get("token_type_hint"), client(request))
    except KeyturnError as exc:
        return _refusal(exc)
    return Response(status_code=200, headers=NO_STORE)


async def _form(request: Request) -> dict[str, str]:
    form = parse_form(await request.body(), request.headers.get("content-type"))
    # RFC 6749 §3.2: "Parameters sent without a value MUST be treated as if they were omitted".
    return {name: value for name, value in form.items() if value}


async def _refresh(svc: Service, lim: RateLimits, who: Client, form: dict[str, str]) -> Any:
    value = form.get("refresh_token")
    if not value:
        raise InvalidRequest("The parameter 'refresh_token' is required.")
    presented = svc.auth.read_refresh_token(value)
    await lim.hit(lim.refresh_session, "refresh", str(presented.session_id))
    scope = scope_names(form["scope"]) if "scope" in form else None
    return await svc.auth.refresh(presented, who, scope=scope)


def _public_client(request: Request, form: dict[str, str], svc: Service) -> None:
    """Only the first-party public client: no client authentication, and no other ``client_id``."""
    if request.headers.get("authorization") is not None or "client_secret" in form or "client_assertion" in form:
        raise InvalidClient("This server has no confidential clients; authenticate with none (a public client).")
    named = form.get("client_id")
    if named is not None and named != svc.settings.client_id:
        raise InvalidClient("Unknown client_id.")


def _refusal(exc: KeyturnError) -> JSONResponse:
    """RFC 6749 §5.2: every refused grant is 400 (the JSON API answers 401), a client 401."""
    reply = answer(exc)
    status = 400 if isinstance(exc, InvalidGrant) else reply.status
    headers = dict(reply.headers)
    headers.pop("WWW-Authenticate", None)
    if isinstance(exc, InvalidClient):
        headers["WWW-Authenticate"] = 'Basic realm="keyturn"'
    return JSONResponse(reply.body, status_code=status, headers=headers)
