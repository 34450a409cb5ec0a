"""Operator routes over HTTP, for users with the ``admin`` role (``keyturn users grant NAME admin``),
whose tokens then carry the ``admin`` scope: the audit log, the signing keys and the OAuth client
registry (what ``keyturn clients`` does)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from ...core.clients import AUTH_METHODS
from ...core.errors import InvalidRequest
from ..config import parse_duration
from ..service import CLIENT_GRANTS, AuditRecord, Caller, ClientRecord, KeyStatus, Registered
from .body import JSONBodyRoute
from .routes import Authed, Svc, Who

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=JSONBodyRoute)


class AuditEvent(BaseModel):
    id: int | None
    at: datetime
    event: str
    outcome: str
    user_id: str | None
    session_id: str | None
    ip: str | None
    user_agent: str | None
    detail: dict[str, Any] | None


class AuditLog(BaseModel):
    events: list[AuditEvent]


class Keys(BaseModel):
    keys: list[KeyStatus]


class Rotation(BaseModel):
    delay: str | None = None  # a duration such as 10m; the default is KEYTURN_KEY_PUBLISH_DELAY


class NewClient(BaseModel):
    client_id: str
    name: str = ""
    scope: str = ""  # space-separated
    audience: str = ""  # space-separated; default KEYTURN_AUDIENCE
    auth_method: str = AUTH_METHODS[0]  # client_secret_basic or client_secret_post
    grant_types: list[str] = list(CLIENT_GRANTS)  # [] for a resource server that only introspects


class ClientOut(BaseModel):
    client_id: str
    name: str
    auth_method: str
    grant_types: list[str]
    scope: str
    audience: str  # empty: the deployment's KEYTURN_AUDIENCE
    created_at: datetime
    secret_rotated_at: datetime
    disabled_at: datetime | None


class ClientWithSecret(ClientOut):
    client_secret: str  # shown once: keyturn keeps only its MAC


class ClientsOut(BaseModel):
    clients: list[ClientOut]


_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid token"},
    403: {"description": "Not an admin"},
}
_CLIENT_ERRORS: dict[int | str, dict[str, Any]] = {**_ADMIN_ERRORS, 404: {"description": "No such client"}}


async def admin(me: Authed, svc: Svc) -> Caller:
    """The caller, if its token has the ``admin`` scope and its user the ``admin`` role (403 otherwise)."""
    svc.auth.require_admin(me)
    return me


@router.get("/audit", responses=_ADMIN_ERRORS)
async def audit(
    svc: Svc,
    _: Annotated[Caller, Depends(admin)],
    user: str | None = None,
    event: Annotated[list[str] | None, Query()] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> AuditLog:
    """The audit log, newest first (filters: user, event (repeatable), since, until)."""
    if any(t is not None and t.utcoffset() is None for t in (since, until)):
        raise InvalidRequest("since and until need a time zone, e.g. 2026-01-01T00:00:00Z.")
    records = await svc.admin.audit(user, event or (), since, until, limit)
    return AuditLog(events=[_event(r) for r in records])


@router.get("/keys", responses=_ADMIN_ERRORS)
async def keys(svc: Svc, _: Annotated[Caller, Depends(admin)]) -> Keys:
    """Every stored signing key: published (in the JWKS) and signing now, or not."""
    return Keys(keys=await svc.admin.keys())


@router.post("/keys/rotate", status_code=201, responses={**_ADMIN_ERRORS, 400: {"description": "Bad delay"}})
async def rotate(svc: Svc, me: Annotated[Caller, Depends(admin)], body: Rotation | None = None) -> KeyStatus:
    """Publish a new signing key now; it takes over signing after ``delay``. Every instance
    publishes it within seconds; give verifiers' caches time (the default delay) before it signs."""
    try:
        delay = parse_duration(body.delay) if body and body.delay is not None else None
    except ValueError as exc:
        raise InvalidRequest(f"delay: {exc}") from None
    kid = (await svc.admin.rotate_key(delay, by=me.user.id)).kid
    return next(k for k in await svc.admin.keys() if k.kid == kid)


@router.get("/clients", responses=_ADMIN_ERRORS)
async def clients(svc: Svc, _: Annotated[Caller, Depends(admin)]) -> ClientsOut:
    """The registered OAuth clients (the first-party public client is built in, not listed)."""
    return ClientsOut(clients=[_client(c) for c in await svc.clients.registered()])


@router.post("/clients", status_code=201, responses={**_ADMIN_ERRORS, 400: {"description": "Bad client"}})
async def add_client(body: NewClient, svc: Svc, who: Who, me: Annotated[Caller, Depends(admin)]) -> ClientWithSecret:
    """Register a confidential client; the answer holds its secret, shown this once."""
    made = await svc.clients.add(
        body.client_id, name=body.name, scope=body.scope, audience=body.audience, auth_method=body.auth_method,
        grant_types=tuple(body.grant_types), who=who, by=me.user.id,
    )  # fmt: skip
    return _with_secret(made)


@router.post("/clients/{client_id}/rotate-secret", responses=_CLIENT_ERRORS)
async def rotate_client_secret(
    client_id: str, svc: Svc, who: Who, me: Annotated[Caller, Depends(admin)]
) -> ClientWithSecret:
    """A new secret, shown this once; the old one stops working at once."""
    return _with_secret(await svc.clients.rotate_secret(client_id, who, me.user.id))


@router.post("/clients/{client_id}/disable", responses=_CLIENT_ERRORS)
async def disable_client(client_id: str, svc: Svc, who: Who, me: Annotated[Caller, Depends(admin)]) -> ClientOut:
    """Disable a client: no more tokens, and the access tokens it holds are ended at once."""
    return _client(await svc.clients.disable(client_id, who, me.user.id))


@router.post("/clients/{client_id}/enable", responses=_CLIENT_ERRORS)
async def enable_client(client_id: str, svc: Svc, who: Who, me: Annotated[Caller, Depends(admin)]) -> ClientOut:
    """Enable a disabled client again (the tokens it held stay ended)."""
    return _client(await svc.clients.enable(client_id, who, me.user.id))


def _client(c: ClientRecord) -> ClientOut:
    return ClientOut(
        client_id=c.client_id, name=c.name, auth_method=c.auth_method, grant_types=c.grant_types.split(),
        scope=c.scope, audience=c.audience, created_at=c.created_at, secret_rotated_at=c.secret_rotated_at,
        disabled_at=c.disabled_at,
    )  # fmt: skip


def _with_secret(made: Registered) -> ClientWithSecret:
    return ClientWithSecret(**_client(made.client).model_dump(), client_secret=made.secret)


def _event(r: AuditRecord) -> AuditEvent:
    return AuditEvent(
        id=r.id,
        at=r.at,
        event=r.event,
        outcome=r.outcome,
        user_id=str(r.user_id) if r.user_id else None,
        session_id=str(r.session_id) if r.session_id else None,
        ip=r.ip,
        user_agent=r.user_agent,
        detail=r.detail,
    )
