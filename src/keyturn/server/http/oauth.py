"""The standard OAuth 2.0 endpoints, for clients nobody here wrote: the RFC 6749 token endpoint
(``refresh_token`` and ``client_credentials``), RFC 7009 revocation and RFC 7662 introspection,
all taking form bodies.

They carry out the same use cases as the first-party JSON API (the same rotation, grace and reuse
rules, the same audit rows, the same revocation feed), and never read the browser's refresh
cookie: the JSON API's CSRF defence rests on JSON bodies, which a cross-site form cannot send, so
a form endpoint must not act on ambient credentials.

Clients (``keyturn.core.clients``): the first-party public client sends no secret; a registered
confidential client authenticates by the method it was registered with. Refreshing needs the
client a session was issued to; ``client_credentials`` needs a registered client with that grant;
introspection needs a registered client.

Errors follow RFC 6749 §5.2: 400 for ``invalid_request``, ``invalid_grant``,
``unauthorized_client``, ``unsupported_grant_type`` and ``invalid_scope``; 401 ``invalid_client``
with a ``Basic`` challenge (RFC 9110 §15.5.2: every 401 names one).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ...core.clients import CLIENT_CREDENTIALS, presented_client
from ...core.errors import InvalidClient, InvalidRequest, KeyturnError, UnsupportedGrantType
from ...core.tokens import scope_names
from ...verify.bearer import NO_STORE, answer
from ..service import Client, ClientRecord, Service
from .form import FORM, parse_form
from .metrics import observe_refusal
from .ratelimit import RateLimits
from .routes import ceiling, client, limits, service

__all__ = ["GRANT_TYPES", "router"]

GRANT_TYPES = ("refresh_token", CLIENT_CREDENTIALS)

router = APIRouter(prefix="/oauth", tags=["oauth"])
_FORM_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {FORM: {"schema": {"type": "object"}}}},
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "`invalid_request`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, "
        "`invalid_scope`"
    },
    401: {"description": "`invalid_client`"},
    503: {"description": "Store unavailable (`temporarily_unavailable`); nothing was issued"},
}


@router.post("/token", openapi_extra=_FORM_BODY, responses=_ERRORS)
async def token(request: Request) -> Response:
    """RFC 6749 token endpoint. `grant_type=refresh_token` with `refresh_token` (and optionally
    `scope`, a part of the grant), from the client the session was issued to: rotation, grace and
    reuse detection as on `/v1/auth/refresh`. `grant_type=client_credentials` (optionally `scope`)
    from a registered confidential client: an access token for the client itself, no refresh token."""
    grant = None
    try:
        await ceiling(request)
        form = await _form(request)
        svc, who = service(request), client(request)
        authenticated = await _client(svc, request, form)
        grant = form.get("grant_type")
        if not grant:
            raise InvalidRequest("The parameter 'grant_type' is required.")
        if grant == "refresh_token":
            body = await _refresh(svc, limits(request), who, form, authenticated)
        elif grant == CLIENT_CREDENTIALS and authenticated is not None:
            await limits(request).hit(limits(request).client_grant, "client_grant", authenticated.client_id)
            issued = await svc.oauth.client_credentials(authenticated, _scope(form), who)
            body = {"access_token": issued.access_token, "token_type": issued.token_type,
                    "expires_in": issued.expires_in, "scope": issued.scope}  # fmt: skip
        elif grant == CLIENT_CREDENTIALS:
            raise InvalidClient("client_credentials needs a registered client that authenticates.", reason="public")
        else:
            raise UnsupportedGrantType(f"The grant type '{grant[:64]}' is not supported; use one of: "
                                       f"{', '.join(GRANT_TYPES)}.")  # fmt: skip
    except KeyturnError as exc:
        return _refusal(request, exc, counted=grant == "refresh_token")
    return JSONResponse(body, headers=NO_STORE)


@router.post("/revoke", openapi_extra=_FORM_BODY, responses=_ERRORS)
async def revoke(request: Request) -> Response:
    """RFC 7009 revocation: `token` (a refresh token or an access token issued to this client;
    `token_type_hint` says which to try first) ends its session; for a machine's own access token,
    every token of its grant. 200 whether or not the token was valid."""
    try:
        await ceiling(request)
        form = await _form(request)
        svc = service(request)
        authenticated = await _client(svc, request, form)
        await svc.oauth.revoke(_required(form, "token"), form.get("token_type_hint"), authenticated, client(request))
    except KeyturnError as exc:
        return _refusal(request, exc)
    return Response(status_code=200, headers=NO_STORE)


@router.post("/introspect", openapi_extra=_FORM_BODY, responses=_ERRORS)
async def introspect(request: Request) -> Response:
    """RFC 7662 introspection, for registered clients (resource servers): `token` in, whether it is
    active now and what it says out; `{"active": false}` for anything ended, expired or unknown."""
    try:
        await ceiling(request)
        form = await _form(request)
        svc = service(request)
        authenticated = await _client(svc, request, form)
        if authenticated is None:
            raise InvalidClient("Introspection needs a registered client that authenticates.", reason="public")
        body = await svc.oauth.introspect(_required(form, "token"))
    except KeyturnError as exc:
        return _refusal(request, exc)
    return JSONResponse(body, headers=NO_STORE)


async def _form(request: Request) -> dict[str, str]:
    form = parse_form(await request.body(), request.headers.get("content-type"))
    # RFC 6749 §3.2: "Parameters sent without a value MUST be treated as if they were omitted".
    return {name: value for name, value in form.items() if value}


async def _client(svc: Service, request: Request, form: dict[str, str]) -> ClientRecord | None:
    """The client a request authenticates as (None: the first-party public client)."""
    return await svc.clients.authenticate(presented_client(request.headers.get("authorization"), form))


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise InvalidRequest(f"The parameter '{name}' is required.")
    return value


def _scope(form: dict[str, str]) -> tuple[str, ...] | None:
    return scope_names(form["scope"]) if "scope" in form else None


async def _refresh(
    svc: Service, lim: RateLimits, who: Client, form: dict[str, str], authenticated: ClientRecord | None
) -> dict[str, Any]:
    presented = svc.auth.read_refresh_token(_required(form, "refresh_token"))
    await lim.hit(lim.refresh_session, "refresh", str(presented.session_id))
    owner = svc.settings.client_id if authenticated is None else authenticated.client_id
    pair = await svc.auth.refresh(presented, who, scope=_scope(form), client_id=owner)
    return {
        "access_token": pair.access_token, "token_type": pair.token_type, "expires_in": pair.expires_in,
        "refresh_token": pair.refresh_token, "refresh_token_expires_in": pair.refresh_token_expires_in,
        "scope": pair.scope, "session_id": pair.session_id,
    }  # fmt: skip


def _refusal(request: Request, exc: KeyturnError, *, counted: bool = False) -> JSONResponse:
    """RFC 6749 §5.2: every refusal but a client's is 400 (the JSON API answers a refused grant
    with 401), a client 401 with a Basic challenge. Refused refreshes are counted as the JSON
    API's are."""
    if counted:
        observe_refusal(request, exc, "refreshes")
    reply = answer(exc)
    status = reply.status if reply.status in (429, 500, 503) else 400
    headers = dict(reply.headers)
    headers.pop("WWW-Authenticate", None)
    if isinstance(exc, InvalidClient):
        status, headers["WWW-Authenticate"] = 401, 'Basic realm="keyturn"'
    return JSONResponse(reply.body, status_code=status, headers=headers)
